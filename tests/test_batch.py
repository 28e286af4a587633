"""What a batch is: its input and target, and copies with one part replaced (SPEC §2)."""

from __future__ import annotations

from collections import UserDict

import torch
from torch import nn

from luz.batch import batch_input, batch_target, call_model, with_input, with_target


def test_a_keyed_dict_is_read_by_its_keys() -> None:
    x, y = torch.ones(2), torch.zeros(2)
    for batch in ({"input": x, "target": y, "labels": 1}, {"x": x, "y": y}):
        assert batch_input(batch) is x and batch_target(batch) is y
    assert batch_target({"x": x, "labels": y}) is None  # keyed: labels is not the target then


def test_any_other_dict_is_the_input_whole_with_labels_as_the_target() -> None:
    ids, labels = torch.ones(2, 3), torch.zeros(2)
    batch = {"input_ids": ids, "labels": labels}
    assert batch_input(batch) is batch  # labels included: model(**batch) computes its loss
    assert batch_target(batch) is labels
    assert batch_target({"input_ids": ids}) is None


def test_replacing_parts_of_a_whole_dict_batch() -> None:
    ids, labels, new = torch.ones(2, 3), torch.zeros(2), torch.ones(2)
    batch = {"input_ids": ids, "labels": labels}
    assert with_target(batch, new) == {"input_ids": ids, "labels": new}  # the model gets it too
    assert with_input(batch, {"input_ids": new}) == {"input_ids": new}
    keyed = with_input(batch, new)
    assert keyed == {"input": new, "target": labels}
    assert batch_input(keyed) is new and batch_target(keyed) is labels
    assert with_input({"x": ids, "y": labels}, new) == {"x": new, "y": labels}


def test_call_model_spreads_any_mapping_as_keywords() -> None:
    class Keywords(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a - b

    a, b = torch.ones(2), torch.full((2,), 3.0)
    expected = torch.full((2,), -2.0)
    assert torch.equal(call_model(Keywords(), {"a": a, "b": b}), expected)
    assert torch.equal(call_model(Keywords(), UserDict(a=a, b=b)), expected)  # e.g. BatchEncoding

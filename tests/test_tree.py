"""luz._tree: the one walker over nested batches and states."""

from __future__ import annotations

import collections
from collections import UserDict

import torch

from luz._tree import map_tensors, to_cpu

Pair = collections.namedtuple("Pair", "x y")


def test_map_tensors_reaches_every_tensor_and_keeps_the_shape_of_the_tree() -> None:
    tree = {"a": (torch.ones(2), [torch.zeros(1), 3, "s"]), "b": Pair(torch.ones(1), None)}
    out = map_tensors(tree, lambda t: t + 1)
    assert torch.equal(out["a"][0], torch.full((2,), 2.0))
    assert isinstance(out["a"], tuple) and isinstance(out["a"][1], list)
    assert torch.equal(out["a"][1][0], torch.ones(1)) and out["a"][1][1:] == [3, "s"]
    assert isinstance(out["b"], Pair) and torch.equal(out["b"].x, torch.full((1,), 2.0))
    assert out["b"].y is None
    assert torch.equal(tree["a"][0], torch.ones(2))  # the input is left as it was


def test_map_tensors_turns_mappings_into_dicts_and_leaves_other_objects() -> None:
    out = map_tensors(UserDict(x=torch.ones(1)), lambda t: t * 5)
    assert type(out) is dict and torch.equal(out["x"], torch.full((1,), 5.0))
    marker = object()
    assert map_tensors(marker, lambda t: t) is marker
    assert torch.equal(map_tensors(torch.ones(1), lambda t: -t), -torch.ones(1))


def test_to_cpu_detaches() -> None:
    w = torch.ones(2, requires_grad=True)
    out = to_cpu([(w * 2,)])
    assert out[0][0].device.type == "cpu" and not out[0][0].requires_grad

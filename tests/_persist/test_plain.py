"""luz._persist.plain: the plain-container check of checkpoints and the JSON codec of luz.save."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch

from luz._persist.plain import TUPLE, from_json, plain, to_json


def test_plain_keeps_tensors_tuples_and_ordered_dicts() -> None:
    t = torch.ones(2)
    value = OrderedDict(a=(t, [1, np.float32(2.5)]), b={"c": None})
    out = plain(value, "state")
    assert isinstance(out, OrderedDict) and out["a"][0] is t
    assert out["a"][1] == [1, 2.5] and type(out["a"][1][1]) is float
    assert isinstance(out["a"], tuple) and out["b"] == {"c": None}
    assert plain({1: "non-str keys are fine"}, "x") == {1: "non-str keys are fine"}


def test_plain_names_where_an_object_sits() -> None:
    with pytest.raises(TypeError, match=r"Cannot checkpoint state\['a'\]\[1\]: it holds a object"):
        plain({"a": [1, object()]}, "state")


def test_json_round_trip_keeps_tuples() -> None:
    value = {"sizes": (1, (2, 3)), "names": ["a", "b"], "lr": np.float64(0.1), "n": np.int64(3)}
    text = json.dumps(to_json(value, "hparams"))
    assert json.loads(text)["sizes"] == {TUPLE: [1, {TUPLE: [2, 3]}]}
    assert from_json(json.loads(text)) == {"sizes": (1, (2, 3)), "names": ["a", "b"], "lr": 0.1, "n": 3}


def test_json_refuses_tensors_and_non_str_keys() -> None:
    with pytest.raises(TypeError, match=r"Cannot save hparams\['w'\]: it is a Tensor"):
        to_json({"w": torch.ones(1)}, "hparams")
    with pytest.raises(TypeError, match=r"Cannot save records\[0\]: it is a dict with non-str keys"):
        to_json([{1: 2}], "records")

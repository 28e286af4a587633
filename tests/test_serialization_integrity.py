"""luz.save / luz.load and weight files under faults (issue 15 points 1 and 9, bad inputs): a
flipped byte, malformed JSON metadata, a directory, and weights that do not fit are a
``ValueError`` naming the file; a failed load leaves the model unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import luz
from tests.conftest import Linear, regression_data


def _fit(in_features: int = 10) -> luz.Fitted:
    x, y = regression_data(features=in_features)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    return module.set_hparams(in_features=in_features).fit((x, y), epochs=2, verbose=False)


def _state(fitted: luz.Fitted) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in fitted.model.state_dict().items()}


def _assert_unchanged(fitted: luz.Fitted, before: dict[str, torch.Tensor]) -> None:
    for key, value in fitted.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def _flip_last_tensor_byte(path: Path) -> None:
    # safetensors: an 8-byte header length, the JSON header, then the tensor bytes; the last
    # byte of the file is tensor data.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x10
    path.write_bytes(bytes(data))


# -- point 1: bit rot in luz.save and weight files ----------------------------------------------------


def test_a_flipped_byte_in_a_saved_model_is_caught_on_load(tmp_path: Path) -> None:
    fitted = _fit()
    luz.save(fitted, tmp_path / "m.safetensors")
    assert luz.load(tmp_path / "m.safetensors", module=Linear).model.fc.bias == fitted.model.fc.bias
    _flip_last_tensor_byte(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"m\.safetensors.* is damaged"):
        luz.load(tmp_path / "m.safetensors", module=Linear)


def test_a_flipped_byte_in_a_weights_file_is_caught_and_the_model_unchanged(tmp_path: Path) -> None:
    fitted = _fit()
    luz.save_model_weights(fitted, tmp_path / "w.safetensors")
    _flip_last_tensor_byte(tmp_path / "w.safetensors")
    before = _state(fitted)
    with pytest.raises(ValueError, match=r"w\.safetensors.* is damaged"):
        luz.load_model_weights(fitted, tmp_path / "w.safetensors")
    _assert_unchanged(fitted, before)


def test_edited_metadata_is_caught_by_the_checksum(tmp_path: Path) -> None:
    luz.save(_fit(), tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    meta = json.loads(metadata["pyluz"])
    meta["hparams"] = {"in_features": 10, "out_features": 1}
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={**metadata, "pyluz": json.dumps(meta)})
    with pytest.raises(ValueError, match="damaged"):
        luz.load(tmp_path / "m.safetensors", module=Linear)


# -- point 9: half-loaded weights -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: {**s, "fc.weight": torch.zeros(1, 3)}, r"wrong shapes \(fc\.weight: \(1, 3\) in the file"),
        (lambda s: {**s, "fc.extra": torch.zeros(1)}, r"unexpected keys \['fc\.extra'\]"),
        (lambda s: {"fc.weight": s["fc.weight"]}, r"missing keys \['fc\.bias'\]"),
    ],
    ids=["wrong-shape", "extra-key", "missing-key"],
)
@pytest.mark.parametrize("writer", ["safetensors", "torch.save"])
def test_weights_that_do_not_fit_leave_the_model_unchanged(
    tmp_path: Path, edit: Any, match: str, writer: str
) -> None:
    fitted = _fit()
    # The file's fitting tensors differ from the model's, so a half-done copy would show.
    weights = edit({k: v + 1.0 for k, v in fitted.model.state_dict().items()})
    path = tmp_path / "w.bin"
    if writer == "safetensors":
        save_file(weights, str(path))
    else:
        torch.save(weights, path)
    before = _state(fitted)
    with pytest.raises(ValueError, match=match) as error:
        luz.load_model_weights(fitted, path)
    assert "w.bin" in str(error.value) and "unchanged" in str(error.value)
    _assert_unchanged(fitted, before)


def test_a_saved_model_does_not_load_into_a_module_of_other_shapes(tmp_path: Path) -> None:
    luz.save(_fit(in_features=4), tmp_path / "m.safetensors")
    net = luz.setup(Linear(in_features=10), loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    with pytest.raises(ValueError, match=r"m\.safetensors.*wrong shapes"):
        luz.load(tmp_path / "m.safetensors", module=net)


# -- bad inputs: luz.load's metadata and paths --------------------------------------------------------


def _model_file(path: Path, pyluz: str) -> None:
    save_file(
        {"fc.weight": torch.zeros(1, 10), "fc.bias": torch.zeros(1)},
        str(path),
        metadata={"format": "pyluz-model", "pyluz": pyluz},
    )


GOOD = {
    "version": 1,
    "class": "tests.conftest:Linear",
    "built_with": "class",
    "hparams": {},
    "opt_hparams": {},
    "records": {"metrics": {"train": [], "valid": []}},
    "optimizer_names": ["opt"],
}


@pytest.mark.parametrize(
    ("pyluz", "match"),
    [
        ("{not json", r"not valid JSON"),
        ("[1, 2]", r"is a JSON list, not an object"),
        ('"text"', r"is a JSON str, not an object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "hparams"}), r"no 'hparams' field"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "records"}), r"no 'records' field"),
        (json.dumps({**GOOD, "hparams": [1]}), r"'hparams' that is a list, not a dict"),
        (json.dumps({**GOOD, "optimizer_names": "opt"}), r"'optimizer_names' that is a str"),
        (json.dumps({**GOOD, "class": "Linear"}), r"malformed 'class'"),
        (json.dumps({**GOOD, "version": 7}), r"version 7"),
    ],
)
def test_malformed_metadata_is_a_value_error_naming_the_file(tmp_path: Path, pyluz: str, match: str) -> None:
    path = tmp_path / "m.safetensors"
    _model_file(path, pyluz)
    for module in (None, Linear):
        with pytest.raises(ValueError, match=match) as error:
            luz.load(path, module=module)
        assert "m.safetensors" in str(error.value)
    GOOD_PATH = tmp_path / "good.safetensors"
    _model_file(GOOD_PATH, json.dumps(GOOD))
    assert isinstance(luz.load(GOOD_PATH, module=Linear).model, Linear)  # the well-formed file loads


def test_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        luz.load(tmp_path)
    with pytest.raises(ValueError, match="is a directory"):
        luz.load_model_weights(_fit(), tmp_path)

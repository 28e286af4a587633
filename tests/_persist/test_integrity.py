"""Verified checkpoints (SPEC §6, issue 15 points 1 and 2): flipped bytes in real checkpoint
files, edited parts and inconsistent counters are a ``ValueError`` naming the file and the part,
raised before any optimizer step; the damaged file is never deleted or rewritten."""

from __future__ import annotations

import hashlib
import math
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz._persist.checkpoint import write_checkpoint
from luz.callbacks import AutoResume, ModelCheckpoint, ResumeFromCheckpoint
from luz.serialization import read_checkpoint
from tests.conftest import Linear, regression_data


class Steps(luz.Callback):
    """Counts optimizer steps (training batches that ended) and the epochs that began."""

    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self) -> None:
        self.steps += 1


class FailAt(luz.Callback):
    """Raises once ``epoch`` is complete (committed, so AutoResume wrote it): at the next
    epoch's begin."""

    weight = math.inf

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_begin(self) -> None:
        if self.context.epoch == self.epoch + 1:
            raise RuntimeError(f"simulated failure at epoch {self.epoch}")


def _fit(callbacks: list[Any], epochs: int = 5) -> luz.Fitted:
    torch.manual_seed(0)
    x, y = regression_data()
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    return module.fit(
        (x, y),
        epochs=epochs,
        valid_data=0.2,
        callbacks=callbacks,
        verbose=False,
        dataloader_options={"batch_size": 16},
    )


def _crashed_run(path: Path) -> None:
    """A real run that crashes after epoch 3 and leaves AutoResume's state at ``path``."""
    with pytest.raises(RuntimeError, match="simulated failure"):
        _fit([AutoResume(path), FailAt(3)])
    assert read_checkpoint(path)["epoch"] == 3


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _member_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """``{member name: (offset of its data, size)}`` of a ``torch.save`` zip (stored, not deflated)."""
    raw = path.read_bytes()
    offsets = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            start = info.header_offset
            name_len, extra_len = struct.unpack("<HH", raw[start + 26 : start + 30])
            offsets[info.filename] = (start + 30 + name_len + extra_len, info.file_size)
    return offsets


def _resume_fails(path: Path, match: str) -> None:
    """Re-running the crashed script fails at fit begin: no step, the file untouched."""
    before = _sha(path)
    steps = Steps()
    with pytest.raises(ValueError, match=match) as error:
        _fit([steps, AutoResume(path), FailAt(99)])
    assert str(path) in str(error.value)
    assert steps.steps == 0
    assert path.exists() and _sha(path) == before


# -- point 1: bit rot -----------------------------------------------------------------------------


def test_every_tensor_of_a_real_checkpoint_is_covered_by_its_checksum(tmp_path: Path) -> None:
    _fit([ModelCheckpoint(tmp_path / "ckpt.pt", monitor="train_loss")], epochs=2)
    good = (tmp_path / "ckpt.pt").read_bytes()
    members = {k: v for k, v in _member_offsets(tmp_path / "ckpt.pt").items() if "/data/" in k}
    assert len(members) >= 6  # weights, bias, Adam moments, RNG states
    for offset, size in members.values():  # each tensor, one at a time
        (tmp_path / "ckpt.pt").write_bytes(good)
        _flip(tmp_path / "ckpt.pt", offset + size // 2, bit=3)
        with pytest.raises(ValueError, match=r"ckpt\.pt.*does not match its sha256 checksum"):
            read_checkpoint(tmp_path / "ckpt.pt")


def test_a_flipped_bit_in_a_recorded_loss_is_caught(tmp_path: Path) -> None:
    fitted = _fit([ModelCheckpoint(tmp_path / "ckpt.pt", monitor="train_loss")], epochs=2)
    loss = fitted.records["metrics"]["train"][1]["loss"]
    offset, size = next(v for k, v in _member_offsets(tmp_path / "ckpt.pt").items() if k.endswith("data.pkl"))
    raw = (tmp_path / "ckpt.pt").read_bytes()
    at = raw.find(b"G" + struct.pack(">d", loss), offset, offset + size)
    assert at > 0
    _flip(tmp_path / "ckpt.pt", at + 8)  # the lowest mantissa bit: still a valid pickle, another loss
    with pytest.raises(ValueError, match="does not match its sha256 checksum"):
        read_checkpoint(tmp_path / "ckpt.pt")
    fresh = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    with pytest.raises(ValueError, match=r"ckpt\.pt"):
        fresh.fit(
            regression_data(), epochs=1, verbose=False, callbacks=[ResumeFromCheckpoint(tmp_path / "ckpt.pt")]
        )


def test_auto_resume_refuses_a_damaged_state_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    _crashed_run(path)
    offset, size = next(v for k, v in _member_offsets(path).items() if k.endswith("/data/0"))
    _flip(path, offset + size - 1, bit=7)
    _resume_fails(path, "damaged")


def test_an_edited_state_without_a_checksum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    _crashed_run(path)
    state = torch.load(path, weights_only=True)
    state["model"]["fc.weight"] += 1.0  # the edit torch.save keeps, with the old checksum
    torch.save(state, path)
    _resume_fails(path, "does not match its sha256 checksum")
    del state["checksum"]
    torch.save(state, path)
    _resume_fails(path, "no valid sha256 checksum")


# -- point 2: damaged or inconsistent parts ---------------------------------------------------------


def _del(part: str) -> Callable[[dict[str, Any]], None]:
    return lambda state: state.pop(part)


def _set_epoch(state: dict[str, Any]) -> None:
    state["epoch"] = 99


def _short_torch_rng(state: dict[str, Any]) -> None:
    state["rng"]["torch"] = state["rng"]["torch"][:100]


def _short_python_rng(state: dict[str, Any]) -> None:
    state["rng"]["python"]["state"] = state["rng"]["python"]["state"][:10]


def _bad_numpy_pos(state: dict[str, Any]) -> None:
    state["rng"]["numpy"]["pos"] = 9999


def _adam_moment(state: dict[str, Any]) -> None:
    state["optimizers"]["opt"]["state"][0]["exp_avg"] = torch.zeros(3)


def _nan_weight(state: dict[str, Any]) -> None:
    state["model"]["fc.weight"][0, 0] = float("nan")


def _wrong_shape(state: dict[str, Any]) -> None:
    state["model"]["fc.weight"] = torch.zeros(2, 10)


def _extra_key(state: dict[str, Any]) -> None:
    state["model"]["fc.extra"] = torch.zeros(1)


def _lost_group(state: dict[str, Any]) -> None:
    state["optimizers"]["opt"]["param_groups"] = []


def _records_not_a_dict(state: dict[str, Any]) -> None:
    state["records"] = [1, 2, 3]


EDITS = [
    pytest.param(_del("rng"), r"part 'rng' is missing", id="no-rng"),
    pytest.param(_del("optimizers"), r"part 'optimizers' is missing", id="no-optimizers"),
    pytest.param(_del("model"), r"part 'model' is missing", id="no-model"),
    pytest.param(_set_epoch, r"part 'epoch' says 99 epochs .* records hold 3", id="epoch-99"),
    pytest.param(_short_torch_rng, r"part \"rng\['torch'\]\" is torch.uint8 \(100,\)", id="torch-rng-size"),
    pytest.param(_short_python_rng, r"rng\['python'\].*625 words", id="python-rng-size"),
    pytest.param(_bad_numpy_pos, r"rng\['numpy'\].*624 words", id="numpy-rng-pos"),
    pytest.param(_adam_moment, r"optimizers\['opt'\] state\[0\]\['exp_avg'\].* has shape \(3,\)", id="adam"),
    pytest.param(_nan_weight, r"model\['fc.weight'\].* NaN", id="nan-weight"),
    pytest.param(_wrong_shape, r"wrong shapes \(fc.weight: \(2, 10\) in the file, \(1, 10\)", id="shape"),
    pytest.param(_extra_key, r"unexpected keys \['fc.extra'\]", id="extra-key"),
    pytest.param(_lost_group, r"optimizers\['opt'\].* has 0 parameter groups", id="param-groups"),
    pytest.param(_records_not_a_dict, r"part 'records' is a list", id="records"),
]


@pytest.mark.parametrize(("edit", "match"), EDITS)
def test_a_damaged_part_is_an_error_naming_file_and_part_before_any_step(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], match: str
) -> None:
    path = tmp_path / "state.pt"
    _crashed_run(path)
    state = read_checkpoint(path)
    edit(state)
    write_checkpoint(state, path)  # re-signed: the checksum matches, the content is wrong
    _resume_fails(path, match)


def test_the_epoch_99_state_is_kept_and_a_repaired_one_resumes_exactly(tmp_path: Path) -> None:
    reference = _fit([AutoResume(tmp_path / "reference.pt"), FailAt(99)])
    path = tmp_path / "state.pt"
    _crashed_run(path)
    good = read_checkpoint(path)
    _set_epoch(bad := read_checkpoint(path))
    write_checkpoint(bad, path)
    _resume_fails(path, "says 99 epochs")
    write_checkpoint(good, path)  # the user restores the good state: the run resumes exactly
    resumed = _fit([AutoResume(path), FailAt(99)])
    assert not path.exists()
    assert len(resumed.records["metrics"]["train"]) == 5
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])
    assert resumed.get_metrics().equals(reference.get_metrics())


def test_a_damaged_state_leaves_the_model_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    _crashed_run(path)
    state = read_checkpoint(path)
    _short_torch_rng(state)  # the last part checked: model and optimizers would fit
    write_checkpoint(state, path)
    seen: dict[str, torch.Tensor] = {}

    class Before(luz.Callback):
        def on_fit_begin(self) -> None:
            seen.update({k: v.clone() for k, v in self.context.model.state_dict().items()})

    class After(luz.Callback):
        weight = math.inf

        def on_fit_begin(self) -> None:
            raise AssertionError("not reached")

    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    model_holder: list[nn.Module] = []

    class Grab(luz.Callback):
        def on_fit_begin(self) -> None:
            model_holder.append(self.context.model)

    with pytest.raises(ValueError, match="rng"):
        module.fit(
            regression_data(),
            epochs=5,
            valid_data=0.2,  # the run that wrote the state (`_fit`): only the rng part differs
            dataloader_options={"batch_size": 16},
            verbose=False,
            callbacks=[Before(), Grab(), AutoResume(path), After()],
        )
    for key, value in model_holder[0].state_dict().items():
        assert torch.equal(value, seen[key]), key


@pytest.mark.parametrize("content", [b"a,b,c\n1,2,3\n", b"", b"\x80\x04K\x01."])
def test_a_file_that_is_not_a_checkpoint_is_a_value_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"data\.csv"):
        read_checkpoint(path)
    fitted = _fit([], epochs=1)
    with pytest.raises(ValueError, match=r"data\.csv"):
        luz.load_checkpoint(fitted, path)
    with pytest.raises(ValueError, match=r"data\.csv"):
        _fit([AutoResume(path)], epochs=1)
    assert path.read_bytes() == content


def test_a_directory_given_as_a_checkpoint_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        read_checkpoint(tmp_path)


def test_load_checkpoint_that_does_not_fit_leaves_the_model_unchanged(tmp_path: Path) -> None:
    _fit([ModelCheckpoint(tmp_path / "ckpt.pt", monitor="train_loss")], epochs=1)
    other = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4)
    fitted = other.fit((torch.randn(32, 4), torch.randn(32, 1)), epochs=1, verbose=False)
    before = {k: v.clone() for k, v in fitted.model.state_dict().items()}
    with pytest.raises(
        ValueError, match=r"ckpt\.pt.*wrong shapes \(fc\.weight: \(1, 10\) in the file, \(1, 4\)"
    ):
        luz.load_checkpoint(fitted, tmp_path / "ckpt.pt")
    for key, value in fitted.model.state_dict().items():
        assert torch.equal(value, before[key])


def test_a_version_1_checkpoint_from_before_checksums_still_resumes(tmp_path: Path) -> None:
    reference = _fit([AutoResume(tmp_path / "reference.pt"), FailAt(99)])
    path = tmp_path / "state.pt"
    _crashed_run(path)
    state = read_checkpoint(path)  # the checksum entry is dropped when read
    torch.save({**state, "version": 1}, path)
    resumed = _fit([AutoResume(path), FailAt(99)])
    assert resumed.get_metrics().equals(reference.get_metrics())
    torch.save({**state, "version": 3}, path)
    _resume_fails(path, "format version 3")

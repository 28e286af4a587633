"""luz.save / luz.load, model weights, checkpoint reading: round trips, fresh processes, and
loading safety (no pickle, no imports)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import luz
from luz.serialization import read_checkpoint
from tests.conftest import Linear, regression_data


class Net(nn.Module):
    def __init__(self, d_in: int = 10, hidden: int = 8, sizes: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.sizes = sizes
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UsesCtx(nn.Module):
    """A model whose forward reads ``self.ctx.training`` (row 65)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        return out * 2 if self.ctx.training else out


def _fit(module: Any = Net, epochs: int = 2, **hparams: Any) -> luz.Fitted:
    x, y = regression_data()
    return (
        luz.setup(module, loss=nn.MSELoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.MAE()])
        .set_hparams(**hparams)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=epochs, verbose=False)
    )


# -- rows 64 / 65 / 66 ---------------------------------------------------------------------------


def test_save_load_round_trip_preserves_predictions(tmp_path: Path) -> None:
    fitted = _fit(hidden=6, sizes=(2, 3))
    x = torch.randn(20, 10)
    expected = fitted.predict(x, verbose=False)
    path = tmp_path / "model.safetensors"
    luz.save(fitted, path)
    del fitted
    loaded = luz.load(path)  # the class is found in this (already imported) test module
    assert type(loaded.model) is Net
    assert loaded.hparams == {"hidden": 6, "sizes": (2, 3)}
    assert loaded.model.sizes == (2, 3)  # tuples survive the JSON round trip
    assert loaded.opt_hparams == {"lr": 0.01}
    assert torch.equal(loaded.predict(x, verbose=False), expected)
    assert len(loaded.records["metrics"]["train"]) == 2
    assert list(loaded.get_metrics()["metric"].unique()) == ["loss", "mae"]
    assert torch.equal(luz.load(path, module=Net).predict(x, verbose=False), expected)


def test_model_reading_ctx_in_forward_predicts_after_load(tmp_path: Path) -> None:
    fitted = _fit(UsesCtx, epochs=1)
    x = torch.randn(5, 10)
    expected = fitted.predict(x, verbose=False)
    luz.save(fitted, tmp_path / "m.safetensors")
    loaded = luz.load(tmp_path / "m.safetensors", module=UsesCtx)
    assert torch.equal(loaded.predict(x, verbose=False), expected)
    assert torch.equal(expected, fitted.model.fc(x).detach())  # predicted as not training


def test_save_and_load_model_weights_in_place(tmp_path: Path) -> None:
    fitted = _fit(Linear, epochs=1)
    before = {k: v.clone() for k, v in fitted.model.state_dict().items()}
    luz.save_model_weights(fitted, tmp_path / "w.safetensors")
    with torch.no_grad():
        for p in fitted.model.parameters():
            p.add_(5)
    model = fitted.model
    assert luz.load_model_weights(fitted, tmp_path / "w.safetensors") is None
    assert fitted.model is model
    for key, value in fitted.model.state_dict().items():
        assert torch.equal(value, before[key])


def test_load_model_weights_reads_torch_save_and_plain_safetensors_state_dicts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _fit(Linear, epochs=2)
    torch.save(source.model.state_dict(), tmp_path / "state.pt")
    save_file(source.model.state_dict(), str(tmp_path / "plain.safetensors"))
    for name in ("state.pt", "plain.safetensors"):
        target = _fit(Linear, epochs=1)
        luz.load_model_weights(target, tmp_path / name)
        for key, value in target.model.state_dict().items():
            assert torch.equal(value, source.model.state_dict()[key]), name
    save_file(source.model.state_dict(), str(tmp_path / "hf.safetensors"), metadata={"format": "pt"})
    luz.load_model_weights(_fit(Linear, epochs=1), tmp_path / "hf.safetensors")  # other tools' metadata
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        luz.load_model_weights(source, tmp_path / "other.pt")


# -- LuzModule, errors ---------------------------------------------------------------------------


def test_load_with_luz_module_can_evaluate_with_its_loss_and_metrics(tmp_path: Path) -> None:
    fitted = _fit(hidden=4)
    luz.save(fitted, tmp_path / "m.safetensors")
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.MAE()])
    loaded = luz.load(tmp_path / "m.safetensors", module=module)
    x, y = regression_data()
    frame = loaded.evaluate((x, y), verbose=False).get_metrics()
    assert list(frame["metric"]) == ["loss", "mae"]
    assert frame["value"].tolist() == fitted.evaluate((x, y), verbose=False).get_metrics()["value"].tolist()


def test_json_unfriendly_hparams_fail_at_save_time(tmp_path: Path) -> None:
    class WithActivation(nn.Module):
        def __init__(self, act: Any = None) -> None:
            super().__init__()
            self.fc = nn.Linear(10, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    fitted = _fit(WithActivation, epochs=1, act=nn.ReLU())
    with pytest.raises(TypeError, match=r"hparams\['act'\].*ReLU"):
        luz.save(fitted, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    with pytest.raises(TypeError, match=r"luz\.Fitted"):
        luz.save(fitted.model, tmp_path / "m.safetensors")  # type: ignore[arg-type]


def _craft_model_file(path: Path, class_path: str) -> None:
    meta = {
        "version": 1,
        "class": class_path,
        "built_with": "class",
        "hparams": {},
        "opt_hparams": {},
        "records": {"metrics": {"train": [], "valid": []}},
        "optimizer_names": ["opt"],
    }
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": "pyluz-model", "pyluz": json.dumps(meta)})


def test_load_never_imports_a_module_named_by_the_file(tmp_path: Path) -> None:
    name = "luz_test_never_imported_module"
    (tmp_path / f"{name}.py").write_text("raise SystemExit('imported!')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        _craft_model_file(tmp_path / "m.safetensors", f"{name}:Net")
        with pytest.raises(ValueError, match="not imported"):
            luz.load(tmp_path / "m.safetensors")
        assert name not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(
    "class_path", ["os:system", "builtins:print", "os.path:join", "torch.nn:Linear.nope"]
)
def test_load_refuses_a_recorded_path_that_is_not_a_module_class(tmp_path: Path, class_path: str) -> None:
    _craft_model_file(tmp_path / "m.safetensors", class_path)
    with pytest.raises(ValueError, match=r"nn\.Module subclass|not found"):
        luz.load(tmp_path / "m.safetensors")


def test_load_of_a_factory_built_model_needs_the_luz_module(tmp_path: Path) -> None:
    def make(width: int = 3) -> nn.Module:
        return nn.Sequential(nn.Linear(10, width), nn.Linear(width, 1))

    fitted = _fit(make, epochs=1, width=5)
    luz.save(fitted, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="factory"):
        luz.load(tmp_path / "m.safetensors")
    module = luz.setup(make, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    loaded = luz.load(tmp_path / "m.safetensors", module=module)
    x = torch.randn(4, 10)
    assert torch.equal(loaded.predict(x, verbose=False), fitted.predict(x, verbose=False))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (str(self.marker), "w"))


def test_pickle_payloads_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    with open(bad, "wb") as handle:
        torch.save({"format": "pyluz-checkpoint", "model": _Payload(marker)}, handle)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    fitted = _fit(Linear, epochs=1)
    for path in (bad, raw):
        with pytest.raises(ValueError, match="Refusing to load"):
            read_checkpoint(path)
        with pytest.raises(ValueError, match="Refusing to load"):
            luz.load_checkpoint(fitted, path)
        with pytest.raises(ValueError, match="not a safetensors file"):
            luz.load(path)
        with pytest.raises(ValueError, match=r"not a safetensors file|Cannot read .* safely"):
            luz.load_model_weights(fitted, path)
    assert not marker.exists()


def test_model_and_weight_files_are_not_interchangeable(tmp_path: Path) -> None:
    fitted = _fit(Linear, epochs=1)
    luz.save_model_weights(fitted, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="not a pyluz-model file"):
        luz.load(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="not a pyluz checkpoint"):
        torch.save({"model": {}}, tmp_path / "plain.pt")
        luz.load_checkpoint(fitted, tmp_path / "plain.pt")


def test_save_is_atomic_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fitted = _fit(Linear, epochs=1)
    path = tmp_path / "m.safetensors"
    luz.save(fitted, path)
    good = path.read_bytes()

    def failing_write(handle: Any, data: bytes) -> None:
        handle.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr("luz.serialization.atomic_write_bytes", _atomic_with_failing_writer(failing_write))
    with pytest.raises(OSError, match="disk full"):
        luz.save(fitted, path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    assert luz.load(path).hparams == {}


def _atomic_with_failing_writer(write: Any) -> Any:
    from luz._persist.atomic import atomic_open

    def atomic_write_bytes(path: Any, data: bytes) -> None:
        with atomic_open(path, "wb") as handle:
            write(handle, data)

    return atomic_write_bytes


# -- a fresh process -------------------------------------------------------------------------------

_MODELS = """
import torch
from torch import nn

class FreshNet(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x)
"""

_TRAIN = """
import sys, torch, luz
from torch import nn
from models import FreshNet
torch.manual_seed(1)
x, y = torch.randn(100, 10), torch.randn(100, 1)
fitted = (luz.setup(FreshNet, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
          .set_hparams(width=5).set_opt_hparams(lr=0.01).fit((x, y), epochs=2, verbose=False))
luz.save(fitted, sys.argv[1])
torch.save(fitted.predict(torch.ones(7, 10) * torch.arange(7.0)[:, None], verbose=False), sys.argv[2])
"""

_PREDICT = """
import sys, torch, luz
import models  # import the defining module first: luz.load only looks at imported modules
fitted = luz.load(sys.argv[1]) if sys.argv[3] == "lookup" else luz.load(sys.argv[1], module=models.FreshNet)
torch.save(fitted.predict(torch.ones(7, 10) * torch.arange(7.0)[:, None], verbose=False), sys.argv[2])
"""


def _python(tmp_path: Path, code: str, *args: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("how", ["lookup", "module"])
def test_save_in_one_process_load_in_another(tmp_path: Path, how: str) -> None:
    (tmp_path / "models.py").write_text(_MODELS)
    model_file, first, second = tmp_path / "m.safetensors", tmp_path / "p1.pt", tmp_path / "p2.pt"
    _python(tmp_path, _TRAIN, str(model_file), str(first))
    _python(tmp_path, _PREDICT, str(model_file), str(second), how)
    a = torch.load(first, weights_only=True)
    b = torch.load(second, weights_only=True)
    assert a.shape == (7, 1)
    assert torch.equal(a, b)

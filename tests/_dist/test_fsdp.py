"""FSDP2 under torchrun (2 CPU processes, Gloo): the same script's weights equal DDP's, the
parameters really are sharded while training, evaluation with uneven shards, metrics, early
stopping, clipping and mixed precision, and `luz.save` gathering the full weights on rank 0.
One rank in this process checks what needs no peer (which modules are sharded, the errors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import luz
from luz._dist.fsdp import gathered, is_sharded, shard_model, user_class
from tests.test_distributed import assert_ok, load, torchrun

# One script, both strategies in the same process group: DDP's run is the reference.
_FSDP = """
import json
from torch.distributed.tensor import DTensor
torch.manual_seed(0)
x = torch.randn(64, 5)
y = x[:, :3].argmax(1)
xv = torch.randn(7, 5)
yv = xv[:, :3].argmax(1)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)
    def forward(self, x):
        return self.head(self.body(x))

def local_shape(t):
    return list((t.to_local() if isinstance(t, DTensor) else t).shape)

class Shards(luz.Callback):
    seen = {}
    def on_train_batch_before_step(self):  # gradients exist until the step zeroes them
        if self.ctx.iter == 1 and self.ctx.epoch == 1:
            for name, p in self.ctx.model.named_parameters():
                Shards.seen[name] = [list(p.shape), local_shape(p), local_shape(p.grad)]
    def on_train_batch_end(self):
        if self.ctx.iter == 1 and self.ctx.epoch == 1:
            for name, p in self.ctx.model.named_parameters():
                Shards.seen[name].append(local_shape(self.ctx.opt.state[p]["exp_avg"]))

def fit(strategy, callbacks, **options):
    torch.manual_seed(0)
    acc = luz.Accelerator(strategy=strategy)
    module = luz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam,
                       metrics=[luz.metrics.Accuracy()]).set_opt_hparams(lr=0.02)
    return acc, module.fit((x, y), epochs=4, valid_data=(xv, yv), accelerator=acc, verbose=False,
                           callbacks=callbacks, dataloader_options={"batch_size": 4}, **options)

out = {}
for strategy in ("ddp", "fsdp"):
    Shards.seen = {}
    early = luz.callbacks.EarlyStopping(monitor="valid_loss", patience=1, min_delta=0.2)
    log = luz.callbacks.CSVLogger(os.path.join(OUT, f"{strategy}.csv"))
    acc, fitted = fit(strategy, [Shards(), early, log])
    luz.save(fitted, os.path.join(OUT, f"{strategy}.safetensors"))
    # 7 samples in batches of 3: rank 0 gets 2 batches, rank 1 gets 1.
    evaluation = fitted.evaluate((xv, yv), accelerator=acc, dataloader_options={"batch_size": 3})
    pred = fitted.predict(xv, accelerator=acc, dataloader_options={"batch_size": 3})
    _, clipped = fit(strategy, [luz.callbacks.MixedPrecision(), luz.callbacks.GradientClip(max_norm=0.05)])
    luz.save(clipped, os.path.join(OUT, f"{strategy}-clipped.safetensors"))
    out[strategy] = {
        "class": type(fitted.model).__name__,
        "sharded": acc.sharded,
        "repr": repr(acc),
        "epochs": len(fitted.records["metrics"]["train"]),
        "records": fitted.records["metrics"],
        "eval": evaluation.records["metrics"]["valid"],
        "pred": pred.tolist(),
        "shards": Shards.seen,
        "clipped_epochs": len(clipped.records["metrics"]["train"]),
    }
dump("fsdp", out)
dump("writes", sorted(set(WRITES)))
"""


class Net(nn.Module):
    """The script's model, for `luz.load` in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


Records = dict[str, list[dict[str, float]]]


def _assert_records_close(got: Records, want: Records) -> None:
    assert got.keys() == want.keys()
    for set_name in want:
        assert len(got[set_name]) == len(want[set_name])
        for g, w in zip(got[set_name], want[set_name], strict=True):
            assert g == pytest.approx(w, rel=1e-4, abs=1e-5), set_name


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_matches_ddp_and_shards_parameters(tmp_path: Path) -> None:
    assert_ok(torchrun(_FSDP, tmp_path, timeout=150))
    r0, r1 = load(tmp_path, "fsdp", 0), load(tmp_path, "fsdp", 1)
    ddp, fsdp = r0["ddp"], r0["fsdp"]
    assert fsdp["sharded"] and not ddp["sharded"]
    assert "strategy='fsdp'" in fsdp["repr"]
    assert fsdp["class"] == "FSDPNet"  # sharded in place, the user's class underneath

    # Parameters, gradients and Adam's state are sharded along dim 0: rank 0 holds
    # ceil(n / 2) rows, rank 1 the rest. DDP's are whole.
    assert set(fsdp["shards"]) == {"body.0.weight", "body.0.bias", "head.weight", "head.bias"}
    for name, (full, local, grad, state) in fsdp["shards"].items():
        other = r1["fsdp"]["shards"][name][1]
        assert local[0] == -(-full[0] // 2) and local[0] + other[0] == full[0], name
        assert local[1:] == full[1:] and grad == local and state == local, name
    assert all(entry[1] == entry[0] for entry in ddp["shards"].values())

    # The same reduced records and the same early stop on both ranks, as with DDP.
    for strategy in ("ddp", "fsdp"):
        without_shards = {k: v for k, v in r0[strategy].items() if k not in ("shards", "repr")}
        assert without_shards == {k: v for k, v in r1[strategy].items() if k not in ("shards", "repr")}
    assert fsdp["epochs"] == ddp["epochs"] < 4  # early stopping ended both runs
    assert fsdp["clipped_epochs"] == ddp["clipped_epochs"] == 4
    _assert_records_close(fsdp["records"], ddp["records"])
    # Uneven evaluation shards (2 batches on rank 0, 1 on rank 1) with gathered parameters.
    assert fsdp["eval"] == pytest.approx(ddp["eval"], rel=1e-4, abs=1e-5)
    torch.testing.assert_close(torch.tensor(fsdp["pred"]), torch.tensor(ddp["pred"]), rtol=0, atol=1e-5)

    # luz.save gathered the full weights on rank 0: an ordinary file, loaded in one process,
    # equal to DDP's (plain, and with bf16 autocast and clipping by the global norm).
    writes0, writes1 = load(tmp_path, "writes", 0), load(tmp_path, "writes", 1)
    assert writes1 == []
    assert {"fsdp.safetensors", "fsdp-clipped.safetensors", "fsdp.csv"} <= set(writes0)
    for name in ("", "-clipped"):
        want = luz.load(tmp_path / f"ddp{name}.safetensors", module=Net).model.state_dict()
        got = luz.load(tmp_path / f"fsdp{name}.safetensors", module=Net).model.state_dict()
        assert got.keys() == want.keys()
        for key, value in want.items():
            torch.testing.assert_close(got[key], value, rtol=0, atol=1e-5)
    csv = [(tmp_path / f"{s}.csv").read_text().splitlines() for s in ("fsdp", "ddp")]
    assert len(csv[0]) == len(csv[1]) == 1 + 2 * fsdp["epochs"]  # rank 0's log, as with DDP


# -- one rank in this process ------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.inner(x))


class Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(Block(), Block())
        self.act = nn.ReLU()  # no parameters: not sharded on its own
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.blocks(x)))


def _units(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if is_sharded(module)]


def test_shard_model_shards_children_with_parameters_then_the_root(one_rank_group: None) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (1,))
    model = shard_model(Tower(), mesh)
    assert _units(model) == ["", "blocks", "out"]
    assert user_class(model) is Tower and type(model).__name__ == "FSDPTower"
    by_class = shard_model(Tower(), mesh, (Block,))
    assert _units(by_class) == ["", "blocks.0", "blocks.1"]
    assert user_class(nn.Linear(2, 2)) is nn.Linear

    x = torch.randn(3, 4)
    reference = by_class(x)
    with torch.no_grad(), gathered(by_class):
        inside = by_class(x)
        assert not any(type(p).__name__ == "DTensor" for p in by_class.parameters())
    assert all(type(p).__name__ == "DTensor" for p in by_class.parameters())  # sharded again
    torch.testing.assert_close(inside, reference.detach())


def test_strategy_and_fsdp_modules_are_checked() -> None:
    with pytest.raises(ValueError, match=r"`strategy` must be one of 'ddp', 'fsdp'.*got 'zero3'"):
        luz.Accelerator(strategy="zero3")
    with pytest.raises(TypeError, match=r"`strategy`.*got 3"):  # a wrong type (SPEC §8)
        luz.Accelerator(strategy=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`fsdp_modules` must hold nn\.Module subclasses, got 'Block'"):
        luz.Accelerator(strategy="fsdp", fsdp_modules=("Block",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`fsdp_modules` must be a tuple"):
        luz.Accelerator(strategy="fsdp", fsdp_modules="Block")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`fsdp_modules` is only used with strategy='fsdp'"):
        luz.Accelerator(fsdp_modules=(Block,))
    acc = luz.Accelerator(strategy="fsdp", fsdp_modules=Block, distributed=False)
    assert acc.strategy == "fsdp" and acc.fsdp_modules == (Block,)
    assert not acc.sharded  # outside torchrun: one process trains the whole model
    assert luz.Accelerator().strategy == "ddp"


def test_fsdp_outside_torchrun_is_one_process() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    module = luz.setup(Tower, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    options = {"batch_size": 8, "shuffle": False}
    torch.manual_seed(1)
    fsdp = module.fit(
        (x, y),
        epochs=2,
        verbose=False,
        dataloader_options=options,
        accelerator=luz.Accelerator(strategy="fsdp"),
    )
    torch.manual_seed(1)
    plain = module.fit((x, y), epochs=2, verbose=False, dataloader_options=options)
    assert type(fsdp.model) is Tower
    for (name, a), b in zip(fsdp.model.state_dict().items(), plain.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class FailInValidation(luz.Callback):
    def on_valid_batch_begin(self) -> None:
        raise RuntimeError("boom in validation")


def test_evaluation_gathers_and_an_error_shards_again(one_rank_group: None) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    module = luz.setup(Tower, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    acc = luz.Accelerator(distributed=True, strategy="fsdp")
    fitted = module.fit((x, y), epochs=1, valid_data=(x, y), verbose=False, accelerator=acc)
    assert is_sharded(fitted.model) and acc.sharded
    full = {k: v.full_tensor() for k, v in fitted.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom in validation"):
        fitted.evaluate((x, y), accelerator=acc, callbacks=[FailInValidation()])
    assert all(type(p).__name__ == "DTensor" for p in fitted.model.parameters())  # sharded again
    plain = Tower()
    plain.load_state_dict(full)
    with torch.no_grad():
        expected = plain(x)
    torch.testing.assert_close(fitted.predict(x, accelerator=acc), expected)


def test_fsdp_modules_choose_the_units_of_a_fit(one_rank_group: None) -> None:
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    module = luz.setup(Tower, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    acc = luz.Accelerator(distributed=True, strategy="fsdp", fsdp_modules=(Block,))
    fitted = module.fit((x, y), epochs=1, verbose=False, accelerator=acc)
    assert _units(fitted.model) == ["", "blocks.0", "blocks.1"]
    assert "strategy='fsdp'" in repr(acc)

"""Sharded checkpoints (FSDP): AutoResume and ModelCheckpoint write DCP directories, each rank
its shard, committed atomically; a kill and rerun resumes bitwise; the directories are verified
(a missing shard, an edited file or metadata is an error naming the directory) and load in one
process; DCP's metadata pickle is read without running code."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import luz
from luz._persist import sharded, sharded_read
from luz._persist.checkpoint import new_checkpoint, write_checkpoint
from luz.serialization import read_checkpoint
from tests.test_distributed import assert_ok, load, torchrun

_RESUME = """
import signal
torch.manual_seed(0)
x = torch.randn(64, 6)
y = x @ torch.randn(6, 1)
valid = (x[:13] + 0.1, y[:13])  # not a valid_data=0.25 split: that one depends on the seed

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(8, 1)
    def forward(self, x):
        return self.head(self.body(x))

class KillRank0(luz.Callback):
    def on_train_batch_end(self):
        if RANK == 0 and self.ctx.epoch == 3 and self.ctx.iter == 2:
            os.kill(os.getpid(), signal.SIGKILL)

class Trained(luz.Callback):
    epochs = []
    def on_train_begin(self):
        Trained.epochs.append(self.ctx.epoch)

def fit(name, callbacks, seed=1):
    torch.manual_seed(seed)
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.MAE()])
    fitted = module.set_opt_hparams(lr=0.01).fit(
        (x, y), epochs=4, valid_data=valid, verbose=False, dataloader_options={"batch_size": 5},
        callbacks=callbacks, accelerator=luz.Accelerator(strategy="fsdp"),
    )
    luz.save(fitted, os.path.join(OUT, name + ".safetensors"))
    dump(name, {"records": fitted.records["metrics"], "draw": torch.rand(3).tolist()})

resume = luz.callbacks.AutoResume(os.path.join(OUT, "state.pt"))
if sys.argv[2] == "kill":  # an uninterrupted run, then the same run killed in epoch 3
    checkpoints = luz.callbacks.ModelCheckpoint(os.path.join(OUT, "ckpt") + "/", monitor="train_loss")
    fit("straight", [luz.callbacks.AutoResume(os.path.join(OUT, "straight.pt")), checkpoints])
    dump("straight_writes", sorted(set(WRITES)))
    fit("unused", [KillRank0(), resume])
else:  # the rerun, from other random states: only the checkpoint's make it the same run
    fit("resumed", [Trained(), resume], seed=2)
    dump("trained", Trained.epochs)
"""


class Net(nn.Module):
    """The script's model, in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return luz.load(path, module=Net).model.state_dict()


@pytest.mark.slow
@pytest.mark.distributed
def test_sharded_checkpoints_resume_exactly_and_are_verified(tmp_path: Path) -> None:
    killed = torchrun(_RESUME, tmp_path, "kill")
    assert killed.returncode != 0 and (tmp_path / "straight_r1.json").exists()
    state = tmp_path / "state.pt"
    assert sharded.is_sharded_checkpoint(state)  # epoch 2's, committed; epoch 3 never finished
    assert read_checkpoint(state)["epoch"] == 2
    data = [p.name for p in state.iterdir() if p.is_dir()]
    assert len(data) == 1 and sorted(p.name for p in (state / data[0]).iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    damaged = tmp_path / "damaged"
    shutil.copytree(state, damaged)

    assert_ok(torchrun(_RESUME, tmp_path, "rerun"))
    assert not state.exists()  # deleted when the resumed fit ended
    assert load(tmp_path, "trained", 0) == [3, 4]  # epochs 1 and 2 came from the checkpoint
    for rank in (0, 1):  # bitwise: records (reduced) and each rank's random stream
        assert load(tmp_path, "resumed", rank) == load(tmp_path, "straight", rank)
    straight = _weights(tmp_path / "straight.safetensors")
    for key, value in _weights(tmp_path / "resumed.safetensors").items():
        assert torch.equal(value, straight[key]), key

    # ModelCheckpoint wrote one committed directory per epoch; each rank wrote its own shard
    # (rank 1 renames nothing: rank 0 commits).
    epochs = sorted((tmp_path / "ckpt").iterdir())
    assert len(epochs) == 4 and all(sharded.is_sharded_checkpoint(p) for p in epochs)
    assert load(tmp_path, "straight_writes", 1) == []
    # The last one loads into a model in this process (DCP reshards to full tensors).
    fitted = luz.load(tmp_path / "straight.safetensors", module=Net)
    with torch.no_grad():
        for p in fitted.model.parameters():
            p.zero_()
    luz.load_checkpoint(fitted, epochs[-1])
    for key, value in fitted.model.state_dict().items():
        assert torch.equal(value, straight[key]), key

    # Verification: a lost shard, an edited metadata file, a missing commit.
    folder = damaged / data[0]
    metadata = (folder / ".metadata").read_bytes()
    (folder / ".metadata").write_bytes(metadata[:-1] + bytes([metadata[-1] ^ 1]))
    with pytest.raises(ValueError, match=r"damaged.*sharded file shards-2-\w+/\.metadata.*SHA-256"):
        read_checkpoint(damaged)
    (folder / ".metadata").write_bytes(metadata)
    (folder / "__1_0.distcp").unlink()
    with pytest.raises(ValueError, match=r"damaged.*__1_0\.distcp.*is missing"):
        read_checkpoint(damaged)
    (damaged / sharded.MANIFEST).unlink()
    with pytest.raises(ValueError, match="not a sharded pyluz checkpoint"):
        read_checkpoint(damaged)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def test_dcp_metadata_is_read_without_running_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".metadata").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ValueError, match=r"'where'.*sharded metadata.*refusing to rebuild builtins\.print"):
        sharded_read.read_metadata(tmp_path, "'where'")
    assert "code ran" not in capsys.readouterr().out


def test_split_and_join_tensors_round_trip() -> None:
    tree = {
        "model": {"w": torch.ones(2)},
        "optimizers": {
            "opt": {
                "state": {"w": {"step": torch.tensor(3.0)}},
                "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": ["w"]}],
            }
        },
    }
    skeleton, tensors = sharded.split_tensors(tree)
    assert sorted(tensors) == ['["model", "w"]', '["optimizers", "opt", "state", "w", "step"]']
    assert sharded.leaf_keys(skeleton) == list(tensors)
    assert skeleton["optimizers"]["opt"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert sharded.join_tensors(skeleton, tensors) == tree


def test_uncommitted_data_is_removed_but_never_the_committed(tmp_path: Path) -> None:
    (tmp_path / ".shards-3-ab.tmp").mkdir()  # a killed write's temporary
    (tmp_path / "shards-2-cd").mkdir()  # committed
    (tmp_path / "shards-1-ef").mkdir()  # the previous checkpoint's data, left by a kill
    (tmp_path / "other").mkdir()  # not pyluz's
    torch.save({"sharded": {"data": "shards-2-cd"}}, tmp_path / sharded.MANIFEST)
    removed = sharded.remove_uncommitted(tmp_path)
    assert sorted(p.name for p in removed) == [".shards-3-ab.tmp", "shards-1-ef"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "other", "shards-2-cd"]


# -- one rank in this process ------------------------------------------------------------------


class Crash(luz.Callback):
    def on_epoch_begin(self) -> None:
        if self.ctx.epoch == 3:
            raise RuntimeError("crash in epoch 3")


def _fit_one_rank(callbacks: list[luz.Callback], seed: int = 1) -> luz.Fitted:
    torch.manual_seed(0)
    x = torch.randn(40, 6)
    y = x @ torch.randn(6, 1)
    torch.manual_seed(seed)
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    acc = luz.Accelerator(distributed=True, strategy="fsdp", cpu=True)
    return module.fit(
        (x, y), epochs=4, verbose=False, accelerator=acc, callbacks=callbacks,
        dataloader_options={"batch_size": 8},
    )  # fmt: skip


def _full(fitted: luz.Fitted) -> dict[str, torch.Tensor]:
    return {k: v.full_tensor() for k, v in fitted.model.state_dict().items()}


def test_one_rank_sharded_resume_and_resume_from_checkpoint(one_rank_group: None, tmp_path: Path) -> None:
    straight = _full(
        _fit_one_rank([luz.callbacks.ModelCheckpoint(f"{tmp_path}/ckpt/", monitor="train_loss")])
    )
    state = tmp_path / "state"
    with pytest.raises(RuntimeError, match="crash in epoch 3"):
        _fit_one_rank([luz.callbacks.AutoResume(state), Crash()])
    assert sharded.is_sharded_checkpoint(state) and read_checkpoint(state)["epoch"] == 2
    (state / ".shards-9-dead.tmp").mkdir()  # what a write killed mid-way would leave
    resumed = _fit_one_rank([luz.callbacks.AutoResume(state)], seed=2)
    assert not state.exists()
    assert type(resumed.model).__name__ == "FSDPNet" and "The model (`Net`) has 65 parameters" in str(resumed)
    for key, value in _full(resumed).items():
        assert torch.equal(value, straight[key]), key

    # ResumeFromCheckpoint on ModelCheckpoint's directory picks the last epoch's directory.
    resume = luz.callbacks.ResumeFromCheckpoint(tmp_path / "ckpt")
    assert resume.resolve() == tmp_path / "ckpt" / sorted(p.name for p in (tmp_path / "ckpt").iterdir())[-1]


def test_a_sharded_resume_reads_the_dcp_metadata_once(
    one_rank_group: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    with pytest.raises(RuntimeError, match="crash in epoch 3"):
        _fit_one_rank([luz.callbacks.AutoResume(state), Crash()])
    reads: list[Path] = []
    real = sharded_read.read_metadata

    def counted(folder: Path, *args: Any, **kwargs: Any) -> Any:
        reads.append(folder)
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(sharded_read, "read_metadata", counted)
    resumed = _fit_one_rank([luz.callbacks.AutoResume(state)], seed=2)
    # AutoResume restores twice (at on_fit_begin, and again at the last skipped epoch); each
    # restore checks and loads from the one safely rebuilt metadata: read once, not twice.
    assert len(reads) == 2
    assert len(resumed.records["metrics"]["train"]) == 4


def test_keep_best_model_is_refused_with_a_sharded_model(one_rank_group: None) -> None:
    with pytest.raises(ValueError, match=r"KeepBestModel does not support a sharded model.*save_best_only"):
        _fit_one_rank([luz.callbacks.KeepBestModel(monitor="train_loss")])


class Weights(luz.Callback):
    seen: ClassVar[dict[str, torch.Tensor]] = {}

    def on_fit_begin(self) -> None:  # after the callbacks before it restored
        state = self.ctx.model.state_dict()
        Weights.seen = {
            k: (v.full_tensor() if hasattr(v, "full_tensor") else v).clone() for k, v in state.items()
        }


def test_a_single_file_checkpoint_gives_a_sharded_model_its_weights(
    one_rank_group: None, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    plain = module.fit((torch.randn(64, 6), torch.randn(64, 1)), epochs=1, verbose=False,
                       accelerator=luz.Accelerator(distributed=False))  # fmt: skip
    file = tmp_path / "weights.pt"  # a checkpoint file holding only weights, as one process writes
    write_checkpoint(new_checkpoint(None, model=plain.model.state_dict()), file)
    _fit_one_rank([luz.callbacks.ResumeFromCheckpoint(file), Weights()])
    for key, value in plain.model.state_dict().items():
        assert torch.equal(Weights.seen[key], value), key
    with pytest.raises(
        ValueError, match=r"optimizer state of checkpoint .*weights\.pt.* into a sharded model"
    ):
        _fit_one_rank([luz.callbacks.ResumeFromCheckpoint(file, restore_optimizer_state=True)])


class KeepEpoch2(luz.Callback):
    weights: ClassVar[dict[str, torch.Tensor]] = {}

    def on_epoch_end(self) -> None:
        if self.ctx.epoch == 2:
            KeepEpoch2.weights = {k: v.full_tensor().clone() for k, v in self.ctx.model.state_dict().items()}


def test_a_sharded_checkpoint_starts_a_fit_that_is_not_sharded(one_rank_group: None, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(RuntimeError, match="crash in epoch 3"):
        _fit_one_rank([luz.callbacks.AutoResume(state), KeepEpoch2(), Crash()])
    assert read_checkpoint(state)["epoch"] == 2

    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    data = (torch.randn(64, 6), torch.randn(64, 1))
    one_process = luz.Accelerator(distributed=False)
    with pytest.raises(ValueError, match=r"AutoResume: .*state' is a sharded checkpoint directory"):
        module.fit(
            data,
            epochs=1,
            verbose=False,
            accelerator=one_process,
            callbacks=[luz.callbacks.AutoResume(state)],
        )
    # Its weights, resharded into one whole model, start a fit that is not sharded.
    module.fit(data, epochs=1, verbose=False, accelerator=one_process,
               callbacks=[luz.callbacks.ResumeFromCheckpoint(state), Weights()])  # fmt: skip
    assert Weights.seen.keys() == KeepEpoch2.weights.keys()
    for key, value in KeepEpoch2.weights.items():
        assert torch.equal(Weights.seen[key], value), key

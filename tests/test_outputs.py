"""Reading a model's output: its logits for metrics/predict/losses, and `loss="output"`."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

import luz
from luz.outputs import OutputLoss, detached, prediction


@dataclasses.dataclass
class Record:
    logits: torch.Tensor


class Out(NamedTuple):
    loss: Any
    logits: torch.Tensor


def test_prediction_is_the_logits_field_of_a_mapping_or_an_object() -> None:
    logits = torch.randn(4, 3)
    assert prediction(logits) is logits
    assert prediction({"loss": torch.tensor(1.0), "logits": logits}) is logits
    assert prediction(OrderedDict(logits=logits)) is logits
    assert prediction(Out(None, logits)) is logits
    assert prediction(Record(logits=logits)) is logits
    plain = {"a": logits}
    assert prediction(plain) is plain  # no logits: the output as it is
    dist = torch.distributions.Categorical(logits=logits)  # computes .logits, declares no field
    assert prediction(dist) is dist
    pair = (logits, logits)
    assert prediction(pair) is pair


class Opaque:
    """An object holding a tensor with a graph (as a Hugging Face key/value cache does)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def test_detached_outputs_keep_no_graph() -> None:
    w = torch.ones(2, requires_grad=True)
    out = OrderedDict(loss=(w * 2).sum(), logits=w * 3, hidden=[w * 4], cache=Opaque(w * 5), n=3)
    kept = detached(out)
    assert list(kept) == ["loss", "logits", "hidden", "n"]  # the opaque cache is dropped
    assert not kept["loss"].requires_grad and not kept["logits"].requires_grad
    assert not kept["hidden"][0].requires_grad and kept["n"] == 3
    other = {"a": w * 2, "extra": Opaque(w)}  # no logits: a user's own output, kept whole
    assert list(detached(other)) == ["a", "extra"] and not detached(other)["a"].requires_grad
    assert not detached(w * 2).requires_grad


def test_output_loss_reads_the_loss_key_or_attribute() -> None:
    loss = torch.tensor(0.5, requires_grad=True)
    assert OutputLoss()({"loss": loss, "logits": torch.ones(1)}, None) is loss
    assert OutputLoss()(Out(loss, torch.ones(1)), torch.ones(1)) is loss


def test_output_loss_errors_name_the_output_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"returned Out with fields \['loss', 'logits'\]") as info:
        OutputLoss()(Out(None, torch.ones(1)), None)
    assert "no `labels` entry" in str(info.value) and "include `labels`" in str(info.value)
    with pytest.raises(ValueError, match=r"a tensor of shape \(2, 1\), which has no `loss` field"):
        OutputLoss()(torch.ones(2, 1), torch.ones(2, 1))


class Keywords(nn.Module):
    """A model in the Hugging Face style: keyword inputs, a dict output with `loss` given
    `labels`."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.fc(features)
        out: dict[str, Any] = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def _samples(n: int, *, labels: bool = True) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    return [{"features": x[i], **({"labels": y[i]} if labels else {})} for i in range(n)]


def test_loss_output_trains_on_the_models_own_loss_like_a_hand_loop() -> None:
    data = _samples(64)
    torch.manual_seed(1)
    fitted = (
        luz.setup(Keywords, loss="output", optimizer=torch.optim.SGD, metrics=[luz.metrics.Accuracy()])
        .set_opt_hparams(lr=0.5)
        .fit(data, epochs=2, verbose=False, dataloader_options={"shuffle": False, "batch_size": 16})
    )
    torch.manual_seed(1)
    model = Keywords()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = torch.utils.data.DataLoader(data, batch_size=16)  # type: ignore[arg-type]
    for _ in range(2):
        correct = 0
        for batch in loader:
            out = model(**batch)  # labels go to the model too
            out["loss"].backward()
            opt.step()
            opt.zero_grad()
            correct += int((out["logits"].argmax(1) == batch["labels"]).sum())
    for (name, got), want in zip(fitted.model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(got, want), name
    assert fitted.records["metrics"]["train"][-1]["acc"] == pytest.approx(correct / 64)
    preds = fitted.predict(_samples(64, labels=False))  # no labels: logits, no loss needed
    with torch.no_grad():
        want_logits = model(torch.stack([s["features"] for s in data]))["logits"]
    assert torch.equal(preds, want_logits)


def test_a_loss_function_receives_the_logits_and_the_labels() -> None:
    seen: list[tuple[torch.Size, torch.Size]] = []

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append((pred.shape, target.shape))
        return nn.functional.cross_entropy(pred, target)

    luz.setup(Keywords, loss=loss, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
        _samples(32), epochs=1, verbose=False, dataloader_options={"batch_size": 16}
    )
    assert seen == [(torch.Size([16, 2]), torch.Size([16]))] * 2


def test_the_modules_own_loss_method_receives_the_whole_output() -> None:
    """A model returning ``{"logits", "mu"}`` whose ``loss`` reads ``mu``: it gets the output
    as returned, while metrics still see the logits."""

    class WithLatent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            logits = self.net(x)
            return {"logits": logits, "mu": logits.mean(dim=1)}

        def loss(self, pred: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(pred["logits"], target) + pred["mu"].pow(2).mean()

    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    fitted = luz.setup(WithLatent, optimizer=torch.optim.SGD, metrics=[luz.metrics.Accuracy()])
    fitted = fitted.set_opt_hparams(lr=0.1).fit((x, y), epochs=1, verbose=False)
    assert 0.0 <= fitted.records["metrics"]["train"][0]["acc"] <= 1.0
    assert fitted.predict(x).shape == (32, 2)


def test_a_loss_function_on_a_dict_batch_without_labels_says_to_add_them() -> None:
    module = luz.setup(Keywords, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
    no_target = r"batch has no target: it is a dict with keys \['features'\]"
    with pytest.raises(ValueError, match=no_target) as info:
        module.set_opt_hparams(lr=0.1).fit(_samples(32, labels=False), epochs=1, verbose=False)
    assert "takes its 'labels' entry as the target: add `labels`" in str(info.value)


def test_loss_output_without_labels_is_a_clear_error_at_the_first_batch() -> None:
    module = luz.setup(Keywords, loss="output", optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    with pytest.raises(ValueError, match=r"At batch 1 of epoch 1 \(training\)") as info:
        module.fit(_samples(32, labels=False), epochs=1, verbose=False)
    assert "returned dict with fields ['logits']" in str(info.value)
    assert "include `labels` in each batch" in str(info.value)


def test_loss_output_with_a_tensor_model_names_the_tensor() -> None:
    module = luz.setup(nn.Linear, loss="output", optimizer=torch.optim.SGD)
    module = module.set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1)
    with pytest.raises(ValueError, match=r"a tensor of shape \(32, 1\), which has no `loss`"):
        module.fit((torch.randn(32, 3), torch.randn(32, 1)), epochs=1, verbose=False)


def test_setup_accepts_loss_output_as_a_loss_and_refuses_other_strings() -> None:
    class NoLossMethod(nn.Linear):
        pass

    module = luz.setup(NoLossMethod, loss="output", optimizer=torch.optim.SGD)  # not "no loss"
    assert "loss='output'" in repr(module)
    with pytest.raises(TypeError, match=r"`loss` as a string must be 'output'.*got 'outputs'"):
        luz.setup(NoLossMethod, loss="outputs", optimizer=torch.optim.SGD)  # type: ignore[arg-type]

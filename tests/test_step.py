"""The default steps: calling the model, computing the loss, predicting."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.step import call_model, compute_loss, has_forward, predict_batch


class Echo(nn.Module):
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return args, kwargs


def test_call_model_dispatch() -> None:
    model = Echo()
    x = torch.ones(1)
    assert call_model(model, x) == ((x,), {})
    assert call_model(model, (x, x)) == ((x, x), {})
    assert call_model(model, [x]) == ((x,), {})
    assert call_model(model, {"a": x}) == ((), {"a": x})


def test_model_without_forward_is_identity() -> None:
    class NoForward(nn.Module):
        pass

    model = NoForward()
    assert not has_forward(model) and has_forward(Echo())
    inputs = (torch.ones(1), torch.zeros(1))
    assert call_model(model, inputs) is inputs


def ctx_with(loss_fn: Any, pred: Any, target: Any) -> luz.Context:
    ctx = luz.Context(accelerator=luz.Accelerator(cpu=True))
    ctx.loss_fn = loss_fn
    ctx.pred = pred
    ctx.batch = (None, target)
    ctx.epoch, ctx.iter = 2, 5
    return ctx


def test_compute_loss_checks() -> None:
    pred = torch.ones(3, requires_grad=True)
    ctx = ctx_with(nn.MSELoss(), pred, torch.zeros(3))
    assert compute_loss(ctx).requires_grad
    ctx.loss_fn = nn.MSELoss(reduction="none")
    with pytest.raises(ValueError, match=r"scalar tensor, got \(3,\) at batch 5 of epoch 2"):
        compute_loss(ctx)
    ctx.loss_fn = lambda p, t: 1.0
    with pytest.raises(ValueError, match="got float"):
        compute_loss(ctx)
    ctx.loss_fn = nn.MSELoss()
    ctx.pred = torch.ones(3)
    with pytest.raises(ValueError, match="does not require grad"):
        compute_loss(ctx)
    assert compute_loss(ctx, training=False).ndim == 0
    ctx.loss_fn = None
    with pytest.raises(RuntimeError, match="No loss function"):
        compute_loss(ctx)


def test_predict_batch_prefers_predict_method() -> None:
    class WithPredict(nn.Linear):
        def predict(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 7)

    ctx = luz.Context(accelerator=luz.Accelerator(cpu=True))
    ctx.model = WithPredict(2, 1)
    ctx.batch = (torch.ones(4, 2),)
    assert predict_batch(ctx).shape == (4, 7)
    ctx.model = nn.Linear(2, 1)
    assert predict_batch(ctx).shape == (4, 1)


def test_train_step_order_and_zero_grad() -> None:
    # per optimizer: forward, loss, backward, step, zero_grad; then the next optimizer
    events: list[str] = []

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 1), nn.Linear(2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            events.append("forward")
            return self.a(x) + self.b(x)

        def set_optimizers(self) -> dict[str, torch.optim.Optimizer]:
            return {
                "a": torch.optim.SGD(self.a.parameters(), lr=0.1),
                "b": torch.optim.SGD(self.b.parameters(), lr=0.1),
            }

    def note(name: str) -> Any:
        def hook(ctx: luz.Context) -> None:
            events.append(f"{name}:{ctx.opt_name}")
            if name == "after_step":
                assert all(p.grad is None for p in ctx.opt.param_groups[0]["params"])
            if name == "before_step":
                assert all(p.grad is not None for p in ctx.opt.param_groups[0]["params"])
                assert ctx.loss_grad is not None and ctx.loss_grad.requires_grad
                assert not ctx.loss[ctx.opt_name].requires_grad

        return hook

    cb = luz.callback(
        on_train_batch_after_loss=note("after_loss"),
        on_train_batch_before_step=note("before_step"),
        on_train_batch_after_step=note("after_step"),
    )
    luz.setup(Two, loss=nn.MSELoss()).fit(
        (torch.ones(4, 2), torch.ones(4, 1)),
        epochs=1,
        callbacks=cb,
        dataloader_options={"batch_size": 4},
        verbose=False,
    )
    assert events == [
        "forward", "after_loss:a", "before_step:a", "after_step:a",
        "forward", "after_loss:b", "before_step:b", "after_step:b",
    ]  # fmt: skip


def test_validation_runs_without_grad_in_eval_mode() -> None:
    seen: list[tuple[bool, bool]] = []

    class Spy(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((torch.is_grad_enabled(), self.training))
            return super().forward(x)

    luz.setup(Spy, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=2, out_features=1
    ).set_opt_hparams(lr=0.1).fit(
        (torch.ones(4, 2), torch.ones(4, 1)),
        epochs=1,
        valid_data=(torch.ones(4, 2), torch.ones(4, 1)),
        dataloader_options={"batch_size": 4},
        verbose=False,
    )
    assert seen == [(True, True), (False, False)]


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fc(a * b)


def _sgd(module: Any) -> luz.LuzModule:
    return luz.setup(module, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)


def test_forward_error_names_batch_epoch_phase_and_shapes() -> None:
    x, y = torch.randn(40, 5), torch.randn(40, 1)
    model = _sgd(nn.Linear).set_hparams(in_features=3, out_features=1)
    with pytest.raises(RuntimeError) as info:
        model.fit((x, y), epochs=1, verbose=False, dataloader_options={"batch_size": 16})
    message = str(info.value)
    assert "forward at batch 1 of epoch 1 (training)" in message
    assert (
        "a tuple of 2 [a tensor of shape (16, 5) (float32), a tensor of shape (16, 1) (float32)]" in message
    )
    assert "((x1, x2), y)" in message and "mat1 and mat2" in message
    assert isinstance(info.value.__cause__, RuntimeError) and "mat1" in str(info.value.__cause__)


def test_forward_error_keeps_the_exact_type_and_pickles() -> None:
    import pickle

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    with pytest.raises(TypeError) as info:  # model(a) for a model that takes (a, b)
        _sgd(_TwoInputs).fit((x, x, y), epochs=1, verbose=False)
    assert type(info.value) is TypeError
    assert "((x1, x2), y)" in str(info.value) and "forward()" in str(info.value)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is TypeError and str(again) == str(info.value)
    # the nested form the hint gives works
    fitted = _sgd(_TwoInputs).fit(((x, x), y), epochs=1, verbose=False)
    assert fitted.predict(((x, x),)).shape == (32, 1)


def test_forward_error_in_validation_and_prediction() -> None:
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    fitted = _sgd(nn.Linear).set_hparams(in_features=3, out_features=1).fit((x, y), epochs=1, verbose=False)
    bad = (torch.randn(40, 4), torch.randn(40, 1))
    with pytest.raises(RuntimeError, match=r"batch 1 of epoch \d+ \(validation\)"):
        fitted.evaluate(bad)
    with pytest.raises(RuntimeError, match=r"forward at batch 2 \(prediction\)") as info:
        fitted.predict(_ShapeChanging(), dataloader_options={"batch_size": 32})
    assert "a tensor of shape (32, 4)" in str(info.value)


class _ShapeChanging(torch.utils.data.Dataset[tuple[torch.Tensor]]):
    """Samples of 3 features, then of 4: the second prediction batch fails."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (torch.randn(3 if i < 32 else 4),)


def test_forward_error_of_a_dict_batch_has_no_tuple_hint() -> None:
    class Keyed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return self.fc(a)

    class Data(torch.utils.data.Dataset[dict[str, Any]]):
        def __len__(self) -> int:
            return 32

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input": {"b": torch.randn(3)}, "target": torch.randn(1)}

    with pytest.raises(TypeError) as info:
        _sgd(Keyed).fit(Data(), epochs=1, verbose=False)
    assert "a dict with keys ['input', 'target']" in str(info.value)
    assert "((x1, x2), y)" not in str(info.value)


def test_stop_training_in_forward_is_not_wrapped() -> None:
    class Stops(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise luz.StopTraining

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    fitted = _sgd(Stops).set_hparams(in_features=3, out_features=1).fit((x, y), epochs=2, verbose=False)
    assert fitted.records["metrics"]["train"] == []


# -- closure optimizers (SPEC §2) ------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_needs_closure_reads_the_step_signature() -> None:
    from luz.step import needs_closure

    params = [nn.Parameter(torch.ones(1))]
    assert needs_closure(torch.optim.LBFGS(params))
    assert not needs_closure(torch.optim.SGD(params, lr=0.1))  # `closure=None`: optional
    assert not needs_closure(torch.optim.Adam(params))

    class Requires(torch.optim.SGD):
        def step(self, closure: Any) -> Any:  # type: ignore[override]
            return super().step(closure)

    assert needs_closure(Requires(params, lr=0.1))


def test_lbfgs_with_the_default_step_equals_a_hand_written_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = (x @ torch.tensor([[1.0], [-2.0], [0.5]])).tanh() + 0.1 * torch.randn(64, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    counts: dict[str, int] = {}

    def count(name: str) -> Any:
        return lambda ctx: counts.__setitem__(name, counts.get(name, 0) + 1)

    spy = luz.callback(
        on_train_batch_after_pred=count("pred"),
        on_train_batch_after_loss=count("loss"),
        on_train_batch_before_backward=count("backward"),
        on_train_batch_before_step=count("step"),
        on_train_batch_after_step=count("after_step"),
    )
    evaluations = [0]

    class Counted(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            evaluations[0] += 1
            return super().forward(x)

    torch.manual_seed(1)
    fitted = (
        luz.setup(Counted, loss=nn.MSELoss(), optimizer=torch.optim.LBFGS)
        .set_opt_hparams(lr=0.5, max_iter=5)
        .fit(loader, epochs=2, callbacks=[spy], verbose=False)
    )

    torch.manual_seed(1)
    model = Net()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    hand_losses = []
    for _ in range(2):
        for xb, yb in loader:

            def closure(xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
                opt.zero_grad()
                loss = nn.functional.mse_loss(model(xb), yb)
                loss.backward()  # type: ignore[no-untyped-call]
                return loss

            hand_losses.append(opt.step(closure))  # type: ignore[arg-type]

    got = dict(fitted.model.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(got[name], param), name
    assert not torch.equal(got["body.0.weight"], Net().body[0].weight)
    # Breakpoints fire once per batch, while LBFGS evaluated the model several times per step.
    assert counts == dict.fromkeys(["pred", "loss", "backward", "step", "after_step"], 8)
    assert evaluations[0] > 8
    # The recorded loss is the batch's loss before the step, as `opt.step(closure)` returns it.
    last = fitted.records["metrics"]["train"][-1]["loss"]
    assert last == pytest.approx(torch.stack(hand_losses[4:]).mean().item())


def test_ordinary_optimizers_get_no_closure() -> None:
    calls: list[Any] = []

    class Spy(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:
            calls.append(closure)
            return super().step(closure)

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    luz.setup(Net, loss=nn.MSELoss(), optimizer=Spy).set_opt_hparams(lr=0.1).fit(
        (x, y), epochs=1, verbose=False, dataloader_options={"batch_size": 8}
    )
    assert calls == [None] * 4


# -- predict keywords (SPEC §1) ---------------------------------------------------------------------


class Scaled(Net):
    def predict(self, x: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
        return self(x) * scale


def test_predict_passes_extra_keywords_to_the_model_predict() -> None:
    x, y = torch.randn(40, 3), torch.randn(40, 1)
    fitted = (
        luz.setup(Scaled, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=1, verbose=False)
    )
    plain = fitted.predict(x)
    with torch.no_grad():
        assert torch.equal(plain, fitted.model(x))
    assert torch.equal(fitted.predict(x, scale=2.0), plain * 2.0)
    assert torch.equal(luz.predict(fitted, x, stack=False, scale=3.0)[0], plain[:32] * 3.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'shift'"):
        fitted.predict(x, shift=1.0)  # the model's own predict refuses it, as Python does


def test_predict_keywords_without_a_predict_method_are_a_type_error() -> None:
    x, y = torch.randn(40, 3), torch.randn(40, 1)
    fitted = (
        luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=1, verbose=False)
    )
    with pytest.raises(TypeError, match=r"'scale', 'shift'.*Net defines no `predict` method"):
        fitted.predict(x, scale=2.0, shift=1.0)
    assert fitted.predict(x).shape == (40, 1)


def test_a_closure_optimizer_with_a_replaced_step_opt_is_an_error() -> None:
    def replace_step_opt(ctx: luz.Context) -> None:
        ctx.step_opt = lambda opt: opt.step()  # as MixedPrecision's GradScaler does on CUDA

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.LBFGS)
    with pytest.raises(ValueError, match=r"LBFGS needs a closure, but ctx\.step_opt was replaced"):
        module.fit((x, y), epochs=1, verbose=False, callbacks=[luz.callback(on_fit_begin=replace_step_opt)])

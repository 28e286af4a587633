"""Hugging Face transformers models trained as they are (SPEC §1 `loss="output"`, §2 dict
batches): tiny models built from configs (no download), compared bit for bit with a
hand-written loop over `torch.utils.data.DataLoader`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import luz
from luz.callbacks import LRScheduler
from luz.metrics import Accuracy

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

VOCAB, LENGTH, WARMUP, LR = 50, 8, 4, 1e-2


def bert_config() -> Any:
    """A 1-layer BERT of hidden size 16 with dropout off (no RNG in the forward pass)."""
    return transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def gpt2_config() -> Any:
    return transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=LENGTH,
        n_embd=16,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        use_cache=False,
    )


def token_columns(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Random token ids; the label says whether the first token is in the upper half."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, LENGTH), generator=gen)
    mask = torch.ones_like(ids)
    mask[: n // 4, -2:] = 0  # some padding, so the attention mask matters
    return {"input_ids": ids, "attention_mask": mask, "labels": (ids[:, 0] >= VOCAB // 2).long()}


def hf_dataset(columns: dict[str, torch.Tensor]) -> Any:
    return datasets.Dataset.from_dict({k: v.tolist() for k, v in columns.items()}).with_format("torch")


def sample_list(columns: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    n = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def warmup(step: int) -> float:
    return min(1.0, (step + 1) / WARMUP)


def hand_loop(
    model: nn.Module, data: Any, valid: Any, epochs: int, loss_fn: Any = None
) -> tuple[list[float], list[float], list[float]]:
    """What luz should do: AdamW, a warm-up LambdaLR stepped per batch, shuffled batches of 16
    (drop_last), the model's own loss; returns per-epoch train accuracy, valid accuracy and
    valid loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup)
    loader = DataLoader(data, batch_size=16, shuffle=True, drop_last=True)
    train_acc, valid_acc, valid_loss = [], [], []
    for _ in range(epochs):
        model.train()
        hits = total = 0
        for batch in loader:
            out = model(**batch)
            loss = out.loss if loss_fn is None else loss_fn(out.logits, batch["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad()
            sched.step()
            hits += int((out.logits.argmax(1) == batch["labels"]).sum())
            total += len(batch["labels"])
        train_acc.append(hits / total)
        model.eval()
        hits = total = 0
        losses = []
        with torch.no_grad():
            for batch in DataLoader(valid, batch_size=32):
                out = model(**batch)
                losses.append(out.loss)
                hits += int((out.logits.argmax(1) == batch["labels"]).sum())
                total += len(batch["labels"])
        valid_acc.append(hits / total)
        valid_loss.append(float(torch.stack(losses).mean()))
    return train_acc, valid_acc, valid_loss


def luz_fit(data: Any, valid: Any, epochs: int, loss: Any = "output") -> luz.Fitted:
    module = luz.setup(
        transformers.BertForSequenceClassification,
        loss=loss,
        optimizer=torch.optim.AdamW,
        metrics=[Accuracy()],
    )
    return (
        module.set_hparams(config=bert_config())
        .set_opt_hparams(lr=LR)
        .fit(
            data,
            epochs=epochs,
            valid_data=valid,
            verbose=False,
            dataloader_options={"batch_size": 16},
            callbacks=[LRScheduler(torch.optim.lr_scheduler.LambdaLR, warmup, call_on="on_train_batch_end")],
        )
    )


def assert_same_weights(got: nn.Module, want: nn.Module) -> None:
    got_state, want_state = got.state_dict(), want.state_dict()
    assert list(got_state) == list(want_state)
    for name, tensor in got_state.items():
        assert torch.equal(tensor, want_state[name]), name


@pytest.mark.parametrize("form", ["datasets", "list"])
def test_bert_classifier_trains_unchanged_like_a_hand_loop(form: str) -> None:
    make = hf_dataset if form == "datasets" else sample_list
    train, valid = make(token_columns(64, seed=1)), make(token_columns(32, seed=2))
    epochs = 2
    torch.manual_seed(7)
    fitted = luz_fit(train, valid, epochs)
    torch.manual_seed(7)
    model = transformers.BertForSequenceClassification(bert_config())
    train_acc, valid_acc, valid_loss = hand_loop(model, train, valid, epochs)

    assert_same_weights(fitted.model, model)
    metrics = fitted.records["metrics"]
    assert [m["acc"] for m in metrics["train"]] == pytest.approx(train_acc, abs=1e-12)
    assert [m["acc"] for m in metrics["valid"]] == pytest.approx(valid_acc, abs=1e-12)
    assert [m["loss"] for m in metrics["valid"]] == pytest.approx(valid_loss, rel=1e-6)


def test_predict_returns_the_logits_also_without_labels() -> None:
    columns = token_columns(48, seed=3)
    torch.manual_seed(0)
    fitted = luz_fit(hf_dataset(columns), None, epochs=1)
    unlabelled = {k: v for k, v in columns.items() if k != "labels"}
    preds = fitted.predict(hf_dataset(unlabelled))  # batches of 32 and 16, stacked
    assert preds.shape == (48, 2)
    with torch.no_grad():
        want = torch.cat(
            [fitted.model(**{k: v[i : i + 32] for k, v in unlabelled.items()}).logits for i in (0, 32)]
        )
    assert torch.equal(preds, want)
    ev = fitted.evaluate(hf_dataset(columns))
    assert set(ev.get_metrics()["metric"]) == {"loss", "acc"}


def test_a_loss_function_on_the_logits_trains_the_same_as_the_models_own_loss() -> None:
    train = hf_dataset(token_columns(64, seed=4))
    torch.manual_seed(3)
    own = luz_fit(train, None, epochs=1)
    torch.manual_seed(3)
    ce = luz_fit(train, None, epochs=1, loss=nn.CrossEntropyLoss())  # sees logits and labels
    assert_same_weights(ce.model, own.model)


def test_loss_output_without_labels_names_the_output_and_the_fix() -> None:
    columns = token_columns(32, seed=5)
    del columns["labels"]
    with pytest.raises(ValueError, match=r"At batch 1 of epoch 1 \(training\)") as info:
        luz_fit(hf_dataset(columns), None, epochs=1)
    message = str(info.value)
    assert "SequenceClassifierOutput with fields ['logits'] and no `loss`" in message
    assert "include `labels` in each batch" in message


def lm_columns(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Counting sequences modulo the vocabulary: each next token is the last plus one."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=gen)
    ids = (start + torch.arange(LENGTH)) % VOCAB
    return {"input_ids": ids, "labels": ids.clone()}


def test_the_key_value_cache_of_a_training_batch_is_not_kept() -> None:
    # GPT-2's default config returns a key/value cache whose tensors hold the batch's graph.
    kept: list[Any] = []
    config = gpt2_config()
    config.use_cache = True
    data = sample_list(lm_columns(32, seed=8))
    luz.setup(transformers.GPT2LMHeadModel, loss="output", optimizer=torch.optim.AdamW).set_hparams(
        config=config
    ).fit(
        data,
        epochs=1,
        verbose=False,
        callbacks=[luz.callback(on_train_end=lambda ctx: kept.append(ctx.pred))],
    )
    assert sorted(kept[0]) == ["logits", "loss"]
    assert not kept[0]["logits"].requires_grad


def test_gpt2_language_model_trains_unchanged_like_a_hand_loop() -> None:
    data = sample_list(lm_columns(64, seed=6))
    torch.manual_seed(11)
    module = luz.setup(transformers.GPT2LMHeadModel, loss="output", optimizer=torch.optim.AdamW)
    fitted = (
        module.set_hparams(config=gpt2_config())
        .set_opt_hparams(lr=LR)
        .fit(
            data,
            epochs=2,
            verbose=False,
            dataloader_options={"batch_size": 16},
            callbacks=[LRScheduler(torch.optim.lr_scheduler.LambdaLR, warmup, call_on="on_train_batch_end")],
        )
    )
    torch.manual_seed(11)
    model = transformers.GPT2LMHeadModel(gpt2_config())
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup)
    model.train()
    epoch_losses = []
    for _ in range(2):
        losses = []
        for batch in DataLoader(data, batch_size=16, shuffle=True, drop_last=True):  # type: ignore[arg-type]
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            sched.step()
            losses.append(loss.detach())
        epoch_losses.append(float(torch.stack(losses).mean()))
    assert_same_weights(fitted.model, model)
    assert [m["loss"] for m in fitted.records["metrics"]["train"]] == pytest.approx(epoch_losses, rel=1e-6)
    preds = fitted.predict(sample_list({"input_ids": lm_columns(8, seed=7)["input_ids"]}))
    assert preds.shape == (8, LENGTH, VOCAB)  # the logits, next-token scores per position


def test_a_model_built_from_plain_config_values_saves_and_loads(tmp_path: Path) -> None:
    def bert_classifier(**config: Any) -> nn.Module:
        return transformers.BertForSequenceClassification(transformers.BertConfig(**config))

    module = luz.setup(bert_classifier, loss="output", optimizer=torch.optim.AdamW)
    sizes = {k: getattr(bert_config(), k) for k in ("vocab_size", "hidden_size", "num_hidden_layers")}
    sizes.update(num_attention_heads=2, intermediate_size=32, max_position_embeddings=LENGTH)
    fitted = module.set_hparams(**sizes).fit(sample_list(token_columns(32, seed=9)), epochs=1, verbose=False)
    with pytest.raises(TypeError, match=r"hparams\['config'\]: it is a BertConfig"):
        luz.save(luz_fit(hf_dataset(token_columns(32, seed=9)), None, epochs=1), tmp_path / "no.safetensors")
    path = tmp_path / "bert.safetensors"
    luz.save(fitted, path)
    loaded = luz.load(path, module=module)
    data = sample_list({"input_ids": token_columns(8, seed=10)["input_ids"]})
    assert torch.equal(loaded.predict(data), fitted.predict(data))

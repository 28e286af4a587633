"""Progress in a real notebook: a notebook built with nbformat, executed by nbclient on an
ipykernel ("python3" kernel, importing this checkout's ``src``), its stored outputs inspected.

One kernel runs one notebook (module fixture); each test reads the cells it is about.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

SRC = str(Path(__file__).resolve().parents[1] / "src")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

SETUP = f"""\
import sys
sys.path.insert(0, {SRC!r})
import torch, luz
from torch import nn
assert luz.__file__.startswith({SRC!r}), luz.__file__
torch.manual_seed(0)
x = torch.randn(64, 10)
y = x.sum(1, keepdim=True)
module = (
    luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.MAE()])
    .set_hparams(in_features=10, out_features=1)
    .set_opt_hparams(lr=0.01)
)
"""

CELLS = {
    "setup": SETUP,
    "fit20": "fitted = module.fit((x, y), epochs=20, valid_data=(x, y))",
    "records": (
        "import json\n"
        "metrics = fitted.records['metrics']\n"
        "print(json.dumps({k: [[e['loss'], e['mae']] for e in v] for k, v in metrics.items()}))"
    ),
    "fit100": "long = module.fit((x, y), epochs=100, valid_data=(x, y))",
    "evaluate": "evaluation = fitted.evaluate((x, y))",
    "predict": "pred = fitted.predict(x)",
    "stopped": (
        "stop = luz.callbacks.EarlyStopping(monitor='valid_loss', mode='max', patience=1)\n"
        "stopped = module.fit((x, y), epochs=20, valid_data=(x, y), callbacks=[stop])\n"
        "assert stopped.stop_reason is not None"
    ),
    "interrupted": (
        "def cut(ctx):\n"
        "    if ctx.epoch == 2 and ctx.iter == 1:\n"
        "        raise KeyboardInterrupt\n"
        "callbacks = [luz.callback(on_train_batch_end=cut)]\n"
        "cut_short = module.fit((x, y), epochs=5, valid_data=(x, y), callbacks=callbacks)\n"
        "assert 'interrupted' in cut_short.stop_reason"
    ),
    # Without ipywidgets: the plain one-line-per-epoch form, on stdout.
    "nowidgets": "sys.modules['ipywidgets'] = None\nplain = module.fit((x, y), epochs=3, valid_data=(x, y))",
}


@pytest.fixture(scope="module")
def executed() -> tuple[dict[str, Any], Any]:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS.values()])
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120, store_widget_state=True)
    client.execute(env=env)  # a failing cell raises CellExecutionError
    return dict(zip(CELLS, notebook.cells, strict=True)), notebook


def _outputs(executed: tuple[dict[str, Any], Any], name: str) -> list[Any]:
    return list(executed[0][name]["outputs"])


def _state(notebook: Any) -> dict[str, Any]:
    return dict(notebook.metadata["widgets"][WIDGET_STATE]["state"])


def _rows(notebook: Any, output: Any) -> list[tuple[str, float, float, str, str]]:
    """The rows of a progress widget: (label, value, max, bar style, text)."""
    state = _state(notebook)

    def model(ref: str) -> dict[str, Any]:
        return dict(state[ref.removeprefix("IPY_MODEL_")]["state"])

    box = dict(state[output["data"][WIDGET_VIEW]["model_id"]]["state"])
    rows = []
    for ref in box["children"]:
        bar, text = (model(child) for child in model(ref)["children"])  # the label: the bar's description
        rows.append((bar["description"], bar["value"], bar["max"], bar["bar_style"], text["value"]))
    return rows


@pytest.mark.slow
def test_nothing_on_stderr_and_no_text_bars(executed: tuple[dict[str, Any], Any]) -> None:
    cells, _ = executed
    for name, cell in cells.items():
        for output in cell["outputs"]:
            assert output["output_type"] != "error", (name, output)
            assert output.get("name") != "stderr", (name, output)
            assert "\r" not in output.get("text", ""), name
            assert "[===" not in json.dumps(output), name


@pytest.mark.slow
def test_a_fit_shows_one_widget_and_one_table_whatever_its_epochs(
    executed: tuple[dict[str, Any], Any],
) -> None:
    for name, epochs in (("fit20", 20), ("fit100", 100)):
        widget, table = _outputs(executed, name)
        assert widget["output_type"] == "display_data" and WIDGET_VIEW in widget["data"]
        assert table["output_type"] == "display_data"
        html = table["data"]["text/html"]
        assert html.count("<tr>") == epochs + 1  # the header and one row per epoch, updated in place
        assert "<th>Train Loss</th><th>Train MAE</th><th>Valid Loss</th><th>Valid MAE</th>" in html
        text = table["data"]["text/plain"].splitlines()  # for viewers without HTML
        assert len(text) == epochs + 1 and text[0].split() == [
            "Epoch", "Train", "Loss", "Train", "MAE", "Valid", "Loss", "Valid", "MAE", "Time"
        ]  # fmt: skip
        assert text[-1].split()[0] == str(epochs)


@pytest.mark.slow
def test_the_table_holds_the_recorded_metrics(executed: tuple[dict[str, Any], Any]) -> None:
    (printed,) = _outputs(executed, "records")  # the kernel's fitted.records, as JSON
    records = json.loads(printed["text"])
    _, table = _outputs(executed, "fit20")
    rows = [line.split() for line in table["data"]["text/plain"].splitlines()[1:]]
    expected = [
        [str(epoch), *(f"{v:.4f}" for v in [*train, *valid])]
        for epoch, (train, valid) in enumerate(zip(records["train"], records["valid"], strict=True), 1)
    ]
    assert [row[:5] for row in rows] == expected
    assert float(expected[-1][1]) < float(expected[0][1])  # it trained


@pytest.mark.slow
def test_widget_rows_finish_green_with_the_last_values(executed: tuple[dict[str, Any], Any]) -> None:
    _, notebook = executed
    widget, _ = _outputs(executed, "fit20")
    rows = _rows(notebook, widget)
    assert [row[0] for row in rows] == ["Epoch 20/20", "train", "valid"]
    epoch, train, valid = rows
    assert epoch[1:4] == (20, 20, "success") and epoch[4].startswith("20/20 epochs - ")
    assert train[1:4] == (2, 2, "success") and train[4].startswith("2/2 - ETA: 00:00 - Loss: ")
    assert valid[1:4] == (2, 2, "success") and " - MAE: " in valid[4]
    (evaluate,) = _rows(notebook, _outputs(executed, "evaluate")[0])
    assert evaluate[0] == "evaluate" and evaluate[1:4] == (2, 2, "success") and "Loss: " in evaluate[4]
    (predict,) = _rows(notebook, _outputs(executed, "predict")[0])
    assert predict[0] == "predict" and predict[1:4] == (2, 2, "success") and "Loss" not in predict[4]


@pytest.mark.slow
def test_early_stopping_note_on_stdout_and_an_orange_epoch_bar(executed: tuple[dict[str, Any], Any]) -> None:
    _, notebook = executed
    widget, table, note = _outputs(executed, "stopped")
    assert note["output_type"] == "stream" and note["name"] == "stdout"
    assert note["text"] == "Early stopping at epoch 2 of 20\n"
    assert table["data"]["text/html"].count("<tr>") == 3
    epoch = _rows(notebook, widget)[0]
    assert epoch[0] == "Epoch 2/20" and epoch[1:4] == (2, 20, "warning")


@pytest.mark.slow
def test_an_interrupt_turns_the_cut_bars_red(executed: tuple[dict[str, Any], Any]) -> None:
    _, notebook = executed
    widget, table, note = _outputs(executed, "interrupted")
    assert (note["name"], note["text"]) == (
        "stdout", "Training interrupted at epoch 2; returning the model trained so far.\n"
    )  # fmt: skip
    assert table["data"]["text/html"].count("<tr>") == 2  # epoch 1 only: epoch 2 did not finish
    epoch, train, valid = _rows(notebook, widget)
    assert epoch[:4] == ("Epoch 2/5", 1, 5, "danger")
    assert train[1:4] == (1, 2, "danger") and train[4].startswith("1/2 - ETA: ")
    assert valid[1:4] == (2, 2, "success")  # epoch 1's, complete


@pytest.mark.slow
def test_without_ipywidgets_one_line_per_epoch_on_stdout(executed: tuple[dict[str, Any], Any]) -> None:
    outputs = _outputs(executed, "nowidgets")
    assert {(out["output_type"], out["name"]) for out in outputs} == {("stream", "stdout")}
    lines = "".join(out["text"] for out in outputs).splitlines()
    assert len(outputs) == len(lines)  # a line is flushed at each epoch end: one output each
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all(" - Train: Loss: " in line and " - Valid: Loss: " in line for line in lines)


@pytest.mark.slow
def test_the_notebook_stays_small(executed: tuple[dict[str, Any], Any]) -> None:
    _, notebook = executed
    outputs = sum(len(cell["outputs"]) for cell in notebook.cells)
    assert outputs == 2 + 1 + 2 + 1 + 1 + 3 + 3 + 3  # 145 epochs in all
    size = len(nbformat.writes(notebook))
    assert size < 150_000, size  # 8 runs, widget state included; the issue saw 2.3 MB for 100 epochs
    long_fit = len(json.dumps(executed[0]["fit100"]["outputs"]))
    assert long_fit < 20_000, long_fit  # 100 epochs: the table (HTML and text) and one widget view

"""Records: logging, the epoch transaction, values and tables."""

from __future__ import annotations

from luz import records as rec
from luz.records import evaluation_frame, metric_rows, metrics_frame


def records() -> dict:  # type: ignore[type-arg]
    return {
        "metrics": {
            "train": [
                {"loss": {"gen": 1.0, "disc": 2.0}, "auc": 0.5},
                {"loss": {"gen": 0.5, "disc": 1.5}, "auc": 0.6},
            ],
            "valid": [
                {"loss": {"gen": 3.0, "disc": 4.0}, "auc": 0.7},
                {"loss": {"gen": 2.0, "disc": 3.0}, "auc": 0.8},
            ],
        },
        "profile": {"fit": [2.5], "epoch": [1.0, 1.0], "train": [0.75, 0.25], "valid": [0.2, 0.2]},
    }


def test_metric_rows_flatten_dicts_in_order() -> None:
    rows = metric_rows(records())
    assert rows[:3] == [
        ("train", "loss_gen", 1, 1.0),
        ("train", "loss_disc", 1, 2.0),
        ("train", "auc", 1, 0.5),
    ]
    assert [r[0] for r in rows] == ["train"] * 6 + ["valid"] * 6
    assert [r[2] for r in rows[:6]] == [1, 1, 1, 2, 2, 2]


def test_metrics_frame() -> None:
    frame = metrics_frame(records())
    assert list(frame.columns) == ["set", "metric", "epoch", "value"]
    assert frame.shape == (12, 4)
    assert metrics_frame({"metrics": {"train": [], "valid": []}}).shape == (0, 4)


def test_evaluation_frame() -> None:
    ev = {"metrics": {"train": [], "valid": [{"loss": 1.0, "mae": 0.5}]}}
    frame = evaluation_frame(ev)
    assert list(frame.columns) == ["metric", "value"]
    assert frame.values.tolist() == [["loss", 1.0], ["mae", 0.5]]


def test_snapshot_and_rollback_drop_only_what_came_after() -> None:
    records = rec.new_records()
    rec.log(records, "metrics", "train", {"loss": 1.0}, 1)
    rec.log(records, "notes", "mine", "kept")
    mark = rec.snapshot(records)
    rec.log(records, "metrics", "train", {"loss": 0.5}, 2)
    rec.log(records, "notes", "mine", "dropped")
    rec.log(records, "notes", "new", "dropped too")
    rec.rollback(mark)
    assert records["metrics"]["train"] == [{"loss": 1.0}]
    assert records["notes"] == {"mine": ["kept"], "new": []}


def test_log_merges_dicts_at_an_index() -> None:
    records = rec.new_records()
    rec.log(records, "metrics", "valid", {"loss": 1.0}, 2)
    rec.log(records, "metrics", "valid", {"acc": 0.5}, 2)
    assert records["metrics"]["valid"] == [{}, {"loss": 1.0, "acc": 0.5}]
    assert rec.get_log(records, "metrics", "valid") == {"loss": 1.0, "acc": 0.5}
    assert rec.get_log(records, "metrics", "valid", 3) is None

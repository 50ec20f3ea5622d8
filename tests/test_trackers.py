"""Trackers, driven by hand through a fake 2-epoch run, read back with TensorBoard's and MLflow's own readers."""

from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from records import TINY_RUN

from cifarbudget.trackers import (
    MLflowTracker,
    RunCallbacks,
    RunInfo,
    SafeCallback,
    TensorBoardTracker,
    flatten_params,
)

SPEC: dict[str, Any] = {
    "model": "resnet20",
    "dataset": "synthetic",
    "augs": ["crop-flip", "cutmix"],
    "epochs": 2,
    "lr": 0.1,
    "nesterov": False,
    "num_classes": 0,
    "aug_params": {"cutmix": {"alpha": 1.0}},
    "warmup": None,
}
EPOCHS = [
    {
        "epoch": 1,
        "lr": 0.1,
        "train_loss": 2.25,
        "train_acc": 0.125,
        "val_loss": 2.0,
        "val_acc": 0.25,
        "seconds": 1.5,
    },
    {
        "epoch": 2,
        "lr": 0.01,
        "train_loss": 1.75,
        "train_acc": 0.375,
        "val_loss": 1.5,
        "val_acc": 0.5,
        "seconds": 1.25,
    },
]
FINAL = {
    "val_acc": 0.5,
    "test_acc": 0.4375,
    "test_loss": 1.625,
    "tta": "none",
    "confusion_matrix": [[1, 0], [0, 1]],
}


def _plot(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    from PIL import Image

    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def _drive(tracker: Any, run_dir: Path, *, status: str = "finished", plots: list[Path] | None = None) -> None:
    """The calls the engine makes for a 2-epoch run."""
    tracker.on_run_start(RunInfo("resnet20-synthetic-e2-s0-abc", run_dir, SPEC))
    for row in EPOCHS:
        tracker.on_epoch_end(row["epoch"], row)
    tracker.on_evaluation(FINAL)
    tracker.on_run_end(
        {"run_id": "resnet20-synthetic-e2-s0-abc", "status": status, "final": FINAL}, plots or []
    )


def test_flatten_params() -> None:
    assert flatten_params(SPEC) == {
        "model": "resnet20",
        "dataset": "synthetic",
        "augs": "crop-flip,cutmix",
        "epochs": 2,
        "lr": 0.1,
        "nesterov": False,
        "num_classes": 0,
        "aug_params.cutmix.alpha": 1.0,
        "warmup": "None",
    }
    info = RunInfo("r", "runs/r", SPEC)  # type: ignore[arg-type]
    assert info.run_dir == Path("runs/r") and info.params == flatten_params(SPEC)


# --- TensorBoard --------------------------------------------------------------------------------
def test_tensorboard_event_files_read_back(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tmp_path / "resnet20-synthetic-e2-s0-abc"
    tracker = TensorBoardTracker()
    _drive(tracker, run_dir, plots=[_plot(tmp_path / "curves.png"), tmp_path / "missing.png"])
    assert tracker.path == run_dir / "tensorboard" and tracker.writer is None  # closed

    ea = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    ea.Reload()
    tags = ea.Tags()
    for name in ("train_loss", "train_acc", "val_acc", "val_loss", "lr", "seconds"):
        events = ea.Scalars(name)
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([EPOCHS[0][name], EPOCHS[1][name]])
    assert "epoch" not in tags["scalars"]
    assert [(e.step, e.value) for e in ea.Scalars("final/test_acc")] == [(2, 0.4375)]
    assert {"final/val_acc", "final/test_loss"} <= set(tags["scalars"])
    assert not any("confusion" in t or "tta" in t for t in tags["scalars"])
    (image,) = ea.Images("plots/curves")
    assert (image.width, image.height) == (40, 30)
    assert "plots/missing" not in tags["images"]
    spec_text = ea.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "resnet20-synthetic-e2-s0-abc" in spec_text and '"augs"' in spec_text
    status = ea.Tensors("status/text_summary")[0].tensor_proto.string_val[0].decode()
    assert status == "finished"

    # the HPARAMS tab: the flattened spec, and the final metrics as its metrics
    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["lr"].number_value == 0.1 and hp["augs"].string_value == "crop-flip,cutmix"
    assert hp["nesterov"].bool_value is False and hp["aug_params.cutmix.alpha"].number_value == 1.0
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert metric_tags == {"final/val_acc", "final/test_acc", "final/test_loss"}


def test_tensorboard_log_dir_gets_one_folder_per_run(tmp_path: Path) -> None:
    tracker = TensorBoardTracker(log_dir=tmp_path / "tb")
    _drive(tracker, tmp_path / "runs" / "x")
    assert tracker.path == tmp_path / "tb" / "resnet20-synthetic-e2-s0-abc"
    assert any(p.name.startswith("events.out.tfevents") for p in tracker.path.iterdir())
    assert not (tmp_path / "runs").exists()


# --- MLflow -------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_ALLOW_FILE_STORE",
    ):
        monkeypatch.delenv(name, raising=False)


def _search(uri: str, monkeypatch: pytest.MonkeyPatch, experiment: str = "cifarbudget") -> Any:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return mlflow.search_runs(experiment_names=[experiment])


def test_mlflow_local_store_reads_back(
    tmp_path: Path, mlflow_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    run_dir = tmp_path / "runs" / "resnet20-synthetic-e2-s0-abc"
    tracker = MLflowTracker()
    _drive(tracker, run_dir, plots=[_plot(tmp_path / "curves.png")])
    store = tmp_path / "runs" / "mlruns"
    assert tracker.uri == store.resolve().as_uri() and store.is_dir()
    # the tracker's environment settings were for its calls only
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ and "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ

    runs = _search(tracker.uri, monkeypatch)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["status"] == "FINISHED"
    assert row["tags.cifarbudget.run_id"] == "resnet20-synthetic-e2-s0-abc"
    assert row["tags.mlflow.runName"] == "resnet20-synthetic-e2-s0-abc"
    for name, value in flatten_params(SPEC).items():
        assert row[f"params.{name}"] == str(value)
    assert row["metrics.test_acc"] == 0.4375 and row["metrics.test_loss"] == 1.625
    assert row["metrics.val_acc"] == 0.5 and row["metrics.train_loss"] == 1.75
    assert "metrics.confusion_matrix" not in runs.columns and "metrics.epoch" not in runs.columns

    client = MlflowClient(tracker.uri)
    history = client.get_metric_history(row["run_id"], "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.25), (2, 1.75)]
    artifacts = {a.path for a in client.list_artifacts(row["run_id"])}
    assert artifacts == {"curves.png", "result.json"}


def test_mlflow_failed_run_long_params_and_resume(
    tmp_path: Path, mlflow_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = (tmp_path / "store").resolve().as_uri()
    spec = {**SPEC, "note": "x" * 7000}
    info = RunInfo("run-a", tmp_path / "run-a", spec)
    first = MLflowTracker(tracking_uri=uri, experiment="exp")
    first.on_run_start(info)
    first.on_epoch_end(1, EPOCHS[0])
    # the process dies here; the resumed run (one epoch done) continues the same MLflow run
    second = MLflowTracker(tracking_uri=uri, experiment="exp")
    second.on_run_start(RunInfo("run-a", tmp_path / "run-a", spec, start_epoch=1))
    assert second.mlflow_run_id == first.mlflow_run_id
    second.on_epoch_end(2, EPOCHS[1])
    second.on_evaluation(FINAL)
    second.on_run_end({"status": "diverged"}, [])

    runs = _search(uri, monkeypatch, "exp")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FAILED"
    note = runs.iloc[0]["params.note"]
    assert len(note) == 6000 and note.endswith("...")


def test_mlflow_resume_with_a_changed_field_outside_the_identity_keeps_tracking(
    tmp_path: Path, mlflow_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume may change ``--tta`` or ``--budget`` (not part of the run id). MLflow refuses to
    change a logged param, which used to switch the tracker off for the resumed part: now the
    first value stays the param, the new one is a tag, and the epochs after the resume are logged."""
    from mlflow import MlflowClient

    uri = (tmp_path / "store").resolve().as_uri()
    first = MLflowTracker(tracking_uri=uri, experiment="exp")
    first.on_run_start(RunInfo("run-c", tmp_path / "run-c", {**SPEC, "tta": "none"}))
    first.on_epoch_end(1, EPOCHS[0])  # then killed, resumed with --tta flip
    resumed = MLflowTracker(tracking_uri=uri, experiment="exp")
    changed = {**SPEC, "tta": "flip", "extra": 1}
    resumed.on_run_start(RunInfo("run-c", tmp_path / "run-c", changed, start_epoch=1))
    assert resumed.mlflow_run_id == first.mlflow_run_id
    resumed.on_epoch_end(2, EPOCHS[1])
    resumed.on_run_end({"status": "finished"}, [])
    run = MlflowClient(tracking_uri=uri).get_run(first.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["tta"] == "none" and run.data.params["extra"] == "1"
    assert run.data.tags["cifarbudget.resumed_with.tta"] == "flip"
    assert not [
        k
        for k in run.data.tags
        if k.startswith("cifarbudget.resumed_with.") and k != "cifarbudget.resumed_with.tta"
    ]
    history = MlflowClient(tracking_uri=uri).get_metric_history(first.mlflow_run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]


def test_mlflow_restart_is_a_new_run_and_a_resume_without_epochs_logs_at_its_last_epoch(
    tmp_path: Path, mlflow_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--restart` (or the same run id trained afresh) starts from epoch 0: a new MLflow run, not
    epochs 1, 2 logged a second time into the unfinished one. A run resumed after its last epoch
    (killed during the final evaluation) logs its final numbers at that epoch, not at step 0."""
    from mlflow import MlflowClient

    uri = (tmp_path / "store").resolve().as_uri()
    first = MLflowTracker(tracking_uri=uri, experiment="exp")
    first.on_run_start(RunInfo("run-b", tmp_path / "run-b", SPEC))
    first.on_epoch_end(1, EPOCHS[0])  # then interrupted, and started again with --restart
    again = MLflowTracker(tracking_uri=uri, experiment="exp")
    again.on_run_start(RunInfo("run-b", tmp_path / "run-b", SPEC))
    assert again.mlflow_run_id != first.mlflow_run_id
    for row in EPOCHS:
        again.on_epoch_end(row["epoch"], row)  # then killed during the final evaluation
    last = MLflowTracker(tracking_uri=uri, experiment="exp")
    last.on_run_start(RunInfo("run-b", tmp_path / "run-b", SPEC, start_epoch=2))
    assert last.mlflow_run_id == again.mlflow_run_id
    last.on_evaluation(FINAL)
    last.on_run_end({"status": "finished"}, [])
    client = MlflowClient(tracking_uri=uri)
    assert [m.step for m in client.get_metric_history(again.mlflow_run_id, "train_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(again.mlflow_run_id, "test_acc")] == [2]


def test_safe_callback_with_an_unreachable_server(tmp_path: Path, mlflow_env: None) -> None:
    warnings: list[str] = []
    tracker = MLflowTracker(tracking_uri="http://127.0.0.1:9")
    safe = SafeCallback(tracker, "mlflow", warnings.append)
    start = time.perf_counter()
    _drive(safe, tmp_path / "run")
    elapsed = time.perf_counter() - start
    print(f"unreachable MLflow server: {elapsed:.2f}s, warning: {warnings}")
    assert elapsed < 10
    assert len(warnings) == 1 and not safe.active
    assert warnings[0].startswith("tracker 'mlflow' failed in on_run_start: ")
    assert "127.0.0.1" in warnings[0] and "off for the rest of this run" in warnings[0]
    assert "\n" not in warnings[0]


class _Flaky:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closed = False

    def on_run_start(self, info: RunInfo) -> None:
        self.calls.append("start")

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.calls.append(f"epoch {epoch}")
        if epoch == 1:
            raise OSError(28, "No space left on device")

    def close(self) -> None:
        self.closed = True


def test_safe_callback_warns_once_and_disables(tmp_path: Path) -> None:
    warnings: list[str] = []
    flaky = _Flaky()
    safe = SafeCallback(flaky, "disk", warnings.append)
    _drive(safe, tmp_path)  # on_evaluation / on_run_end are missing on _Flaky: skipped
    assert flaky.calls == ["start", "epoch 1"] and flaky.closed
    assert warnings == [
        "tracker 'disk' failed in on_epoch_end: OSError: [Errno 28] No space left on device; "
        "it is off for the rest of this run"
    ]


def test_run_callbacks_keep_the_others_going(tmp_path: Path) -> None:
    warnings: list[str] = []
    flaky, steady = _Flaky(), _Flaky()
    steady.on_epoch_end = lambda epoch, metrics: steady.calls.append(f"epoch {epoch}")  # type: ignore[method-assign]
    callbacks = RunCallbacks([("flaky", flaky), ("steady", steady)], warn=warnings.append)
    _drive(callbacks, tmp_path)
    assert len(callbacks) == 2 and len(warnings) == 1
    assert steady.calls == ["start", "epoch 1", "epoch 2"]


@pytest.mark.parametrize(
    ("module", "tracker", "extra"),
    [("mlflow", MLflowTracker, "mlflow"), ("torch.utils.tensorboard", TensorBoardTracker, "tensorboard")],
)
def test_missing_package_is_one_warning_naming_the_extra(
    module: str, tracker: Any, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    warnings: list[str] = []
    safe = SafeCallback(tracker(), extra, warnings.append)
    _drive(safe, tmp_path)
    assert warnings == [
        f"tracker '{extra}' failed in on_run_start: the {extra} tracker needs the {extra} package: "
        f"pip install 'cifarbudget[{extra}]'; it is off for the rest of this run"
    ]


def test_bad_mlflow_options() -> None:
    from cifarbudget.errors import RunError

    with pytest.raises(RunError, match="timeout must be > 0"):
        MLflowTracker(timeout=0)
    assert math.isclose(MLflowTracker(timeout=2.5).timeout, 2.5)


def test_a_tracker_whose_factory_raises_is_one_warning_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import types

    import cifarbudget
    from cifarbudget.runner import build_callbacks

    plugin = types.ModuleType("broken_tracker")

    def cannot_start() -> Any:
        raise RuntimeError("no server configured")

    @cifarbudget.hookimpl
    def cifarbudget_register_callbacks(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("broken-tracker", cannot_start, description="its factory raises")

    plugin.cifarbudget_register_callbacks = cifarbudget_register_callbacks  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("broken_tracker", plugin),))
    with caplog.at_level("WARNING", logger="cifarbudget"):
        callbacks = build_callbacks(("broken-tracker",))
    assert len(callbacks) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "tracker 'broken-tracker' (plugin 'broken_tracker') could not start (RuntimeError: no server "
        "configured); the run goes on without it"
    ]
    with pytest.raises(
        cifarbudget.errors.CifarBudgetError
    ):  # a misspelt name still stops the run, in one line
        build_callbacks(("brokn-tracker",))


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        (
            "tensorboard",
            "callbacks takes callback objects, not names ('tensorboard'): pass registered trackers",
        ),
        (TensorBoardTracker, "pass an instance of TensorBoardTracker, not the class"),
        (object(), "has none of the methods on_run_start, on_epoch_end, on_evaluation, on_run_end"),
    ],
)
def test_callbacks_that_would_never_be_called_are_refused(
    tmp_path: Path, callback: Any, message: str
) -> None:
    """``run(callbacks=["tensorboard"])`` used to train without ever calling anything."""
    import cifarbudget
    from cifarbudget.errors import RunError

    with pytest.raises(RunError, match=re.escape(message)):
        cifarbudget.run("resnet20", dataset="synthetic", epochs=1, results_dir=tmp_path, callbacks=[callback])
    assert not any(tmp_path.iterdir())


def test_a_callback_that_edits_what_it_is_given_changes_neither_the_record_nor_the_next(
    tmp_path: Path,
) -> None:
    """A callback that rounded ``final["test_acc"]`` and popped the confusion matrix in
    ``on_evaluation`` changed the run's result.json: it was handed the dict the run then saved."""
    import json

    import cifarbudget

    seen: list[dict[str, Any]] = []

    class Meddler:
        def on_evaluation(self, final: dict[str, Any]) -> None:
            final["test_acc"] = 0.999
            final.pop("confusion_matrix", None)

    class Watcher:
        def on_evaluation(self, final: dict[str, Any]) -> None:
            seen.append(final)

    result = cifarbudget.run(
        "airnet-small", results_dir=tmp_path, callbacks=[Meddler(), Watcher()], **TINY_RUN
    )
    record = json.loads((result.run_dir / "result.json").read_text())
    assert record["final"]["test_acc"] == result.test_acc != 0.999
    assert "confusion_matrix" in record["final"]
    assert seen[0]["test_acc"] == result.test_acc and "confusion_matrix" in seen[0]

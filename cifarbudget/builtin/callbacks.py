"""Builtin run callbacks: the TensorBoard and MLflow trackers (implemented in :mod:`cifarbudget.trackers`)."""

from __future__ import annotations

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import lazy


@hookimpl
def cifarbudget_register_callbacks(registry) -> None:
    registry.add(
        "tensorboard",
        lazy("cifarbudget.trackers:TensorBoardTracker"),
        description="TensorBoard event files in RUN_DIR/tensorboard: spec, per-epoch metrics, final "
        "metrics, plots (extra [tensorboard]); params log_dir",
    )
    registry.add(
        "mlflow",
        lazy("cifarbudget.trackers:MLflowTracker"),
        description="MLflow run in RESULTS_DIR/mlruns or $MLFLOW_TRACKING_URI: spec as params, metrics, "
        "plots (extra [mlflow]); params tracking_uri, experiment",
    )

"""Run callbacks: the protocol, the TensorBoard and MLflow trackers, and the guard that keeps a
failing tracker from ever stopping or corrupting a run.

A run callback is any object with some of these methods (all optional; the engine calls the
ones it finds, in this order):

- ``on_run_start(info: RunInfo)``: once, before the first epoch (also when a run resumes);
  ``info`` has ``run_id``, ``run_dir`` (Path), ``spec`` (dict) and ``params`` (the spec
  flattened for logging, :func:`flatten_params`).
- ``on_epoch_end(epoch: int, metrics: dict[str, float])``: after each epoch (1-based), with the
  epoch's row of the run's history (``train_loss``, ``train_acc``, ``val_acc``, ``lr``, ...).
- ``on_evaluation(final: dict)``: once, with the final metrics (``val_acc``, ``test_acc``, ...;
  non-numeric entries such as the confusion matrix are ignored by the trackers).
- ``on_run_end(result: dict, plots: list[Path])``: once, with the run's record
  (``RunResult.to_dict()``: its ``status`` says finished, diverged or failed) and its plots.

Callbacks come from plugins (hook ``cifarbudget_register_callbacks(registry)``, factory
``factory(**params) -> callback``); the builtin ones are :class:`TensorBoardTracker` and
:class:`MLflowTracker`. The engine wraps each in :class:`SafeCallback`: an exception from a
tracker (package missing, server down, disk full) becomes one warning naming the tracker and the
error, and that tracker is off for the rest of the run. The trackers import their packages
(optional extras ``[tensorboard]``, ``[mlflow]``) when the run starts, not when created.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarbudget.errors import CifarBudgetError, RunError
from cifarbudget.results import FINISHED

log = logging.getLogger(__name__)

CALLBACK_METHODS = ("on_run_start", "on_epoch_end", "on_evaluation", "on_run_end")
ParamValue = str | int | float | bool


# --- the protocol -------------------------------------------------------------------------------
def flatten_params(spec: Mapping[str, Any], prefix: str = "") -> dict[str, ParamValue]:
    """The spec as flat ``name -> value`` pairs for experiment trackers.

    Nested dicts become dotted names (``aug_params.cutmix.alpha``), lists and tuples
    comma-separated text (``augs = "crop-flip,cutmix"``), ``None`` the text ``"None"``; numbers,
    booleans and strings stay as they are.
    """
    out: dict[str, ParamValue] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_params(value, f"{name}."))
            else:
                out[name] = "{}"
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


@dataclass
class RunInfo:
    """What ``on_run_start`` receives."""

    run_id: str
    run_dir: Path
    spec: dict[str, Any]
    params: dict[str, ParamValue] = field(default_factory=dict)  # flatten_params(spec) when empty
    start_epoch: int = 0  # epochs already trained: 0 for a new run (or a restart), k when resuming after k

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        if not self.params:
            self.params = flatten_params(self.spec)


class RunCallback:
    """A base class with every method of the protocol doing nothing (subclassing it is optional)."""

    def on_run_start(self, info: RunInfo) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch with its metrics."""

    def on_evaluation(self, final: dict[str, Any]) -> None:
        """Called once with the final metrics."""

    def on_run_end(self, result: dict[str, Any], plots: list[Path]) -> None:
        """Called once at the end, with the run's record and plots."""


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The real-number entries of ``metrics`` (not bools, lists, strings or the epoch counter)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    if isinstance(exc, CifarBudgetError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the guard ----------------------------------------------------------------------------------
class SafeCallback:
    """Calls ``callback``'s methods; the first exception becomes one ``warn`` and disables it.

    Each call gets its own deep copy of the arguments: a callback that edits the final metrics it
    is given changes neither the run's ``result.json`` nor what the next callback sees.

    Never raises (``KeyboardInterrupt`` and ``SystemExit`` still stop the run). After the
    failure the callback's ``close()`` is called, if it has one, to release what it holds (its
    errors are ignored), and every later call is skipped. ``warn`` defaults to this module's
    logger.
    """

    def __init__(self, callback: Any, name: str, warn: Callable[[str], None] | None = None) -> None:
        self.callback = callback
        self.name = name
        self.warn = warn or log.warning
        self.error: str | None = None  # the warning given, once the callback failed

    @property
    def active(self) -> bool:
        return self.error is None

    def _call(self, method: str, *args: Any) -> None:
        if self.error is not None:
            return
        fn = getattr(self.callback, method, None)
        if fn is None:
            return
        try:
            fn(*copy.deepcopy(args))  # its own copies: what it changes is not what the run records
        except Exception as exc:
            self.error = f"tracker {self.name!r} failed in {method}: {_one_line(exc)}; it is off for the rest of this run"
            try:
                self.warn(self.error)
            except Exception:
                log.warning(self.error)
            close = getattr(self.callback, "close", None)
            if close is not None:
                with suppress(Exception):
                    close()

    def on_run_start(self, info: RunInfo) -> None:
        self._call("on_run_start", info)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self._call("on_epoch_end", epoch, metrics)

    def on_evaluation(self, final: dict[str, Any]) -> None:
        self._call("on_evaluation", final)

    def on_run_end(self, result: dict[str, Any], plots: list[Path]) -> None:
        self._call("on_run_end", result, plots)


class RunCallbacks:
    """Several callbacks, each behind a :class:`SafeCallback`, called in order: what the engine holds."""

    def __init__(
        self, callbacks: Sequence[tuple[str, Any]] = (), warn: Callable[[str], None] | None = None
    ) -> None:
        self.callbacks = [SafeCallback(cb, name, warn) for name, cb in callbacks]

    def __len__(self) -> int:
        return len(self.callbacks)

    def on_run_start(self, info: RunInfo) -> None:
        for cb in self.callbacks:
            cb.on_run_start(info)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, metrics)

    def on_evaluation(self, final: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_evaluation(final)

    def on_run_end(self, result: dict[str, Any], plots: list[Path]) -> None:
        for cb in self.callbacks:
            cb.on_run_end(result, plots)


# --- TensorBoard --------------------------------------------------------------------------------
class TensorBoardTracker(RunCallback):
    """Logs a run to TensorBoard with ``torch.utils.tensorboard.SummaryWriter``.

    Event files go to ``<run_dir>/tensorboard`` by default, or ``<log_dir>/<run_id>`` when
    ``log_dir`` is given (so ``tensorboard --logdir results/runs`` or ``--logdir LOG_DIR`` shows
    every run). Logged: the spec (text ``spec``, and as hyperparameters with the final metrics in
    the HPARAMS tab), each epoch's metrics as scalars named as in ``metrics.csv`` (``train_loss``,
    ``val_acc``, ``lr``, ...; step = epoch), the final metrics as ``final/<name>`` (step = last
    epoch), the run's status (text ``status``) and its plots as images ``plots/<file stem>``.
    """

    def __init__(self, log_dir: str | Path | None = None) -> None:
        self.log_dir = Path(log_dir).expanduser() if log_dir is not None else None
        self.writer: Any = None
        self.path: Path | None = None
        self._params: dict[str, ParamValue] = {}
        self._final: dict[str, float] = {}
        self._step = 0

    def on_run_start(self, info: RunInfo) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RunError(
                "the tensorboard tracker needs the tensorboard package: pip install 'cifarbudget[tensorboard]'"
            ) from None
        self.path = self.log_dir / info.run_id if self.log_dir is not None else info.run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.path))
        self._params = dict(info.params)
        self._step = info.start_epoch  # a resume with no epoch left logs its final numbers at its last epoch
        spec = json.dumps(info.spec, indent=2, sort_keys=True, default=str)
        # markdown: four leading spaces make a code block
        self.writer.add_text(
            "spec", f"run `{info.run_id}`\n\n" + "\n".join("    " + line for line in spec.splitlines())
        )

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self._step = int(epoch)
        for name, value in _numbers(metrics).items():
            self.writer.add_scalar(name, value, self._step)
        self.writer.flush()

    def on_evaluation(self, final: dict[str, Any]) -> None:
        self._final = {f"final/{k}": v for k, v in _numbers(final).items()}
        for name, value in self._final.items():
            self.writer.add_scalar(name, value, self._step)

    def on_run_end(self, result: dict[str, Any], plots: list[Path]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # the HPARAMS tab: written into this run's folder (SummaryWriter.add_hparams would make a subfolder)
        for summary in hparams(self._params, {k: v for k, v in self._final.items() if math.isfinite(v)}):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("status", str(result.get("status", "unknown")), self._step)
        for plot in plots:
            image = _read_png(plot)
            if image is not None:
                self.writer.add_image(f"plots/{Path(plot).stem}", image, self._step, dataformats="HWC")
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()


def _read_png(path: Path | str) -> Any:
    """An image file as a uint8 ``(H, W, 3)`` array, or ``None`` when it is missing."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# --- MLflow -------------------------------------------------------------------------------------
_MLFLOW_KEY = re.compile(r"[^A-Za-z0-9_\-. :/]")
_TERMINAL = {FINISHED: "FINISHED"}
RUN_ID_TAG = "cifarbudget.run_id"
RESUMED_TAG = "cifarbudget.resumed_with"  # + ".<param>": a value a resume changed


class MLflowTracker(RunCallback):
    """Logs a run to MLflow through ``mlflow.MlflowClient`` (no global active run).

    ``tracking_uri``: any MLflow tracking URI; by default ``$MLFLOW_TRACKING_URI``, else a local
    file store ``<results_dir>/mlruns`` (the run folder's parent). MLflow 3 refuses file stores
    unless ``MLFLOW_ALLOW_FILE_STORE=true``; the tracker sets it for its own calls (a database
    store, ``sqlite:///...``, is what MLflow recommends, but several sweep workers creating one
    SQLite store at once fail, while file stores take concurrent runs). ``experiment``: the
    experiment name (created when missing), by default ``$MLFLOW_EXPERIMENT_NAME`` or
    ``cifarbudget``. ``timeout`` (seconds per HTTP request) and ``retries`` bound what an
    unreachable server costs; they are applied as ``MLFLOW_HTTP_REQUEST_TIMEOUT`` /
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` during the tracker's calls unless already set.

    Logged: the flattened spec as params (names and values cut to MLflow's limits), tag
    ``cifarbudget.run_id`` (and the MLflow run name = the run id), each epoch's metrics (step =
    epoch), the final metrics under their own names (step = last epoch), the plots and
    ``result.json`` as artifacts; the MLflow run ends FINISHED when the run finished, else
    FAILED. A resumed run continues its unfinished MLflow run; MLflow params cannot change, so a
    field outside the run's identity that the resume changed (``--budget``, ``--tta``) keeps its
    first value as the param and its new value as tag ``cifarbudget.resumed_with.<param>``.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        *,
        timeout: float = 5.0,
        retries: int = 0,
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise RunError(f"mlflow tracker: timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.timeout = timeout
        self.retries = retries
        self.client: Any = None
        self.uri: str | None = None
        self.mlflow_run_id: str | None = None
        self._step = 0

    @contextmanager
    def _env(self) -> Iterator[None]:
        wanted = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(self.timeout))),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.retries),
        }
        if self.uri is not None and _is_file_uri(self.uri):
            wanted["MLFLOW_ALLOW_FILE_STORE"] = "true"
        added = [k for k in wanted if k not in os.environ]
        for k in added:
            os.environ[k] = wanted[k]
        # -q: MLflow's own INFO lines (creating its database tables) are quiet too
        quiet = not logging.getLogger("cifarbudget").isEnabledFor(logging.INFO)
        loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")] if quiet else []
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
        try:
            yield
        finally:
            for k in added:
                os.environ.pop(k, None)
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)

    def on_run_start(self, info: RunInfo) -> None:
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Param, RunTag
        except ImportError:
            raise RunError(
                "the mlflow tracker needs the mlflow package: pip install 'cifarbudget[mlflow]'"
            ) from None
        self.uri = (
            self.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or (info.run_dir.parent / "mlruns").resolve().as_uri()
        )
        name = self.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "cifarbudget"
        with self._env():
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment_id = self._experiment_id(name)
            self._step = info.start_epoch
            # continue the unfinished MLflow run only when this one resumes (a restart, or the same
            # run id trained afresh elsewhere, starts a new MLflow run: no epoch logged twice)
            self.mlflow_run_id = (
                self._unfinished_run(experiment_id, info.run_id) if info.start_epoch else None
            )
            logged: dict[str, str] = {}
            if self.mlflow_run_id is None:
                run = self.client.create_run(
                    experiment_id, run_name=info.run_id, tags={RUN_ID_TAG: info.run_id}
                )
                self.mlflow_run_id = run.info.run_id
            else:
                self.client.update_run(self.mlflow_run_id, status="RUNNING")
                logged = dict(self.client.get_run(self.mlflow_run_id).data.params)
            wanted = dict(_param(k, v) for k, v in info.params.items())
            # MLflow params cannot change: a resume that changed a field outside the run's identity
            # (--budget, --tta) keeps the first value as the param and records the new one as a tag
            params = [Param(k, v) for k, v in wanted.items() if k not in logged]
            tags = [RunTag("cifarbudget.run_dir", str(info.run_dir))]
            tags += [
                RunTag(_key(f"{RESUMED_TAG}.{k}"), v)
                for k, v in wanted.items()
                if k in logged and logged[k] != v
            ]
            entries: list[Any] = [*tags, *params]  # MLflow's limit is on params and tags together
            batch = _limits()["batch"]
            for start in range(0, len(entries), batch):
                chunk = entries[start : start + batch]
                self.client.log_batch(
                    self.mlflow_run_id,
                    params=[e for e in chunk if isinstance(e, Param)],
                    tags=[e for e in chunk if isinstance(e, RunTag)],
                )

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except MlflowException:  # another process created it in between
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _unfinished_run(self, experiment_id: str, run_id: str) -> str | None:
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if runs and runs[0].info.status != "FINISHED":
            return str(runs[0].info.run_id)
        return None

    def _log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_key(k), v, now, step) for k, v in metrics.items()]
        batch = _limits()["metrics"]
        with self._env():
            for start in range(0, len(items), batch):
                self.client.log_batch(self.mlflow_run_id, metrics=items[start : start + batch])

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self._step = int(epoch)
        self._log_metrics(_numbers(metrics), self._step)

    def on_evaluation(self, final: dict[str, Any]) -> None:
        self._log_metrics(_numbers(final), self._step)

    def on_run_end(self, result: dict[str, Any], plots: list[Path]) -> None:
        with self._env():
            for plot in plots:
                if Path(plot).is_file():
                    self.client.log_artifact(self.mlflow_run_id, str(plot))
            self.client.log_dict(self.mlflow_run_id, result, "result.json")
            status = _TERMINAL.get(str(result.get("status")), "FAILED")
            self.client.set_terminated(self.mlflow_run_id, status=status)
        self.mlflow_run_id = None

    def close(self) -> None:
        """End an MLflow run that is still open as FAILED (after a failure; errors ignored)."""
        if self.client is not None and self.mlflow_run_id is not None:
            run_id, self.mlflow_run_id = self.mlflow_run_id, None
            with self._env():
                self.client.set_terminated(run_id, status="FAILED")


def _is_file_uri(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


def _limits() -> dict[str, int]:
    try:
        from mlflow.utils import validation as v

        return {
            "key": int(v.MAX_ENTITY_KEY_LENGTH),
            "value": int(v.MAX_PARAM_VAL_LENGTH),
            "batch": int(v.MAX_PARAMS_TAGS_PER_BATCH),
            "metrics": int(v.MAX_METRICS_PER_BATCH),
        }
    except (ImportError, AttributeError):  # the limits of MLflow 2.x and 3.x
        return {"key": 250, "value": 6000, "batch": 100, "metrics": 1000}


def _key(name: str) -> str:
    """An MLflow-safe key: allowed characters only, within the length limit."""
    return _MLFLOW_KEY.sub("_", name)[: _limits()["key"]]


def _param(name: str, value: ParamValue) -> tuple[str, str]:
    text = str(value)
    limit = _limits()["value"]
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _key(name), text

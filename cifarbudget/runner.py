"""One run, top to bottom: resolve -> check -> load -> build -> train -> evaluate -> record.

(The module is ``runner``, not ``run``, because ``cifarbudget.run`` is the public function.)

:func:`run` turns options (a model name, a recipe, ``RunSpec`` fields) into a checked
:class:`RunSpec` and calls :func:`run_spec`, which the sweep workers call directly. The order is
cheap-first: every name and the parameter budget are checked before any image is decoded; a
finished record of the same spec is returned without training and an unfinished one resumes from
its checkpoint; the test split is evaluated once, at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cifarbudget.budget import BudgetReport, check_budget
from cifarbudget.compute import (
    TRAIN_FACTOR,
    forward_macs_per_epoch,
    images_per_epoch,
    passes_per_step,
    planned_training,
    training_split_size,
    validation_size,
)
from cifarbudget.data.core import (
    DeviceSplit,
    Split,
    as_split,
    default_data_dir,
    normalization_stats,
    stratified_split,
    subset,
)
from cifarbudget.device import DeviceSettings, check_aug_chunk, configure_backends, device_name
from cifarbudget.device import resolve as resolve_device
from cifarbudget.engine import (
    CHECKPOINT,
    Engine,
    TrainPlan,
    TrainState,
    confusion_matrix,
    evaluate,
    laid_out_for,
    steps_per_epoch,
)
from cifarbudget.errors import (
    CifarBudgetError,
    DataError,
    OverBudgetError,
    RunError,
    StorageError,
    UnexpectedRunError,
    describe,
)
from cifarbudget.identity import RUN_POSITIONAL, RUN_SUPPLIED
from cifarbudget.io import lock_path, remove_stale_temporaries, run_lock
from cifarbudget.plugins import get_registry
from cifarbudget.progress import plural
from cifarbudget.results import (
    DIVERGED,
    ERROR_LOG,
    FAILED,
    FINISHED,
    RESULT_FILE,
    RUNNING,
    SETTLED,
    RunResult,
    git_revision,
    load_result,
    manifest,
    now,
)
from cifarbudget.spec import RunSpec, resolve_spec
from cifarbudget.trackers import RunInfo

log = logging.getLogger(__name__)

DEFAULT_RESULTS_DIR = Path("results/runs")
CPU_MACS_PER_SECOND = 2.0e10  # fwd+bwd multiply-accumulates per second per core, measured on the dev machines


@dataclass(frozen=True)
class RunSettings:
    """Where a run reads and writes and how it runs: none of it is part of the run's identity."""

    data_dir: Path | None = None
    download: bool = False
    results_dir: Path = DEFAULT_RESULTS_DIR
    device: str | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    deterministic: bool = False
    aug_chunk: int = 1  # training batches augmented at once (engine.augmented_batches)
    restart: bool = False
    progress: bool = True
    track: tuple[str, ...] = ()  # run callbacks (trackers) by name: --track tensorboard --track mlflow
    callbacks: tuple[
        Any, ...
    ] = ()  # run callback objects (e.g. tune's pruning reporter), after the named ones

    def __post_init__(self) -> None:  # a mistake is one line before any work, not after the data load
        check_aug_chunk(self.aug_chunk)
        if self.data_dir is not None:  # recorded absolute: predict and --from read it from anywhere
            object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        check_callback_objects(self.callbacks)


def run(
    model: str | None = None,
    *,
    recipe: str | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    results_dir: str | Path = DEFAULT_RESULTS_DIR,
    device: str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    deterministic: bool = False,
    aug_chunk: int = 1,
    restart: bool = False,
    progress: bool = True,
    track: tuple[str, ...] | list[str] = (),
    callbacks: tuple[Any, ...] | list[Any] = (),
    **options: Any,
) -> RunResult:
    """Train and evaluate one configuration; return its :class:`RunResult`.

    ``options`` are :class:`RunSpec` fields (``dataset``, ``augs``, ``sched``, ``tta``, ``epochs``,
    ``lr``, ...); ``None`` values fall back to the recipe's, then to the defaults. ``track`` names
    registered run callbacks (trackers); ``callbacks`` are callback objects (the same protocol).
    ``aug_chunk`` augments that many training batches at once (the same distribution of
    augmentations in fewer, larger operations; not part of the run's identity). An identical
    spec that already finished is returned without training; an unfinished one resumes from its
    last checkpoint unless ``restart``.
    """
    recorded_data_id = options.pop("_recorded_data_id", None)
    spec = resolve_spec(model, recipe=recipe, data_dir=data_dir, **options)
    if recorded_data_id and recorded_data_id != spec.data_id:
        log.warning(
            "the data in %s differ from the recorded run's (data id %s, recorded %s): this is not an exact rerun",
            data_dir or "the data folder",
            spec.data_id,
            recorded_data_id,
        )
    settings = RunSettings(
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        download=download,
        results_dir=Path(results_dir),
        device=device,
        amp=amp,
        channels_last=channels_last,
        compile=compile,
        deterministic=deterministic,
        aug_chunk=aug_chunk,
        restart=restart,
        progress=progress,
        track=tuple(track),
        callbacks=tuple(callbacks),
    )
    # every check that needs no data, before anything is written (the lock's folder included)
    check_component_params(spec)
    validate_components(spec)
    report = check_spec_budget(spec, settings.data_dir or default_data_dir())
    # the same lock a sweep worker holds: two processes never train (or clean) one run folder at once
    with run_lock(lock_path(settings.results_dir, spec.run_id), wait=False) as acquired:
        if not acquired:
            raise RunError(
                f"{spec.run_id} is being trained by another process (a sweep or another 'run'); "
                "wait for it to finish, then run the same command again to see its result"
            )
        return run_spec(spec, settings, report=report, checked=True)


def recorded_run_options(source: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options that rerun a recorded run exactly (``run --from``): its spec, and the settings
    it ran with that change its numbers: the data folder it read (``data_dir``) and, when it was
    not 1, ``aug_chunk``. The data's identity is computed again from the folder: when the data
    differ from the recorded run's, the rerun gets another id (and a warning says why)."""
    from cifarbudget.spec import spec_fields

    record = load_result(source)
    known = {f.name for f in spec_fields()}
    options = {k: v for k, v in record.spec.items() if k in known and k != "data_id"}
    data_dir = (record.manifest.get("settings") or {}).get("data_dir")
    if data_dir is None:  # records that predate recorded settings: the folder is in the data source
        source_text = str(record.data.get("source", ""))
        parts = source_text.split(":")
        data_dir = ":".join(parts[1:-1]) if len(parts) >= 3 else None
    recorded_id = record.spec.get("data_id")
    if recorded_id:
        options["_recorded_data_id"] = recorded_id
    settings: dict[str, Any] = {"data_dir": data_dir}
    aug_chunk = (record.manifest.get("engine") or {}).get("aug_chunk", 1)
    if aug_chunk != 1:  # the same batches drawn the same way
        settings["aug_chunk"] = aug_chunk
    return options, settings


def run_spec(
    spec: RunSpec, settings: RunSettings, *, report: BudgetReport | None = None, checked: bool = False
) -> RunResult:
    """Run a checked spec: the body of :func:`run` and of every sweep worker.

    ``report``: the spec's budget verdict when the caller has already counted it (a sweep counts
    each model once); it is counted here otherwise. ``checked``: the caller has already run
    :func:`check_component_params` and :func:`validate_components` on this spec (:func:`run`
    does, before it takes the run's lock); they run here otherwise (sweep workers, ``tune``).
    """
    root = settings.data_dir or default_data_dir()
    if not checked:  # building the components again would read a kd teacher run once more
        check_component_params(spec)
        validate_components(spec)
    report = report or check_spec_budget(spec, root)
    run_dir = settings.results_dir / spec.run_id
    # left by a process killed mid-write (the caller holds the run's lock: nobody else writes here)
    for name in (RESULT_FILE, "metrics.csv", CHECKPOINT, "curves.png", "confusion.png", ERROR_LOG):
        remove_stale_temporaries(run_dir, name)
    check_tracker_names(settings.track)  # also when nothing is trained
    previous = _settled_record(run_dir, settings.restart)
    if previous is not None:
        recorded_chunk = (previous.manifest.get("engine") or {}).get("aug_chunk", 1)
        if settings.aug_chunk != recorded_chunk:
            log.warning(
                "%s: trained with --aug-chunk %s, not %s (which draws other random augmentations and "
                "is not part of the run id); use --restart to train it with %s",
                spec.run_id,
                recorded_chunk,
                settings.aug_chunk,
                settings.aug_chunk,
            )
        if needs_tta_evaluation(previous, spec):
            return add_tta_evaluation(previous, spec, root, settings, report)
        log.info(
            "%s: already %s; not training again (use --restart to start over)", spec.run_id, previous.status
        )
        return previous

    callbacks = build_callbacks(settings.track, settings.callbacks)  # an unknown name fails before any work
    started = time.perf_counter()
    device = resolve_device(
        settings.device,
        amp=settings.amp,
        channels_last=settings.channels_last,
        compile=settings.compile,
        deterministic=settings.deterministic,
        aug_chunk=settings.aug_chunk,
    )
    backend = configure_backends(device)
    data = load_data(spec, root, settings.download, device)
    report = _recheck_budget(spec, report, len(data.classes))
    if spec.compute_budget and dataset_metadata(spec.dataset, root) is None:  # sizes known only now
        check_compute_budget(spec, report, len(data.train) + len(data.val))
    if device.device.type == "cpu" and settings.progress:
        _warn_cpu(spec, report, len(data.train))

    engine, pipeline_info = build(spec, data, device, run_dir, settings.progress)
    record = RunResult(
        run_id=spec.run_id,
        status=RUNNING,
        spec=spec.to_dict(),
        budget=report.to_dict(),
        out_of_budget=not report.within_budget,
        data=data.info,
        pipeline=pipeline_info,
        identity=run_identity(spec),
        manifest={
            **manifest(device, spec.seed),
            "backend": backend,
            "engine": device.to_dict(),
            "components": component_provenance(spec),
            "settings": {"data_dir": str(root), "download": settings.download},
        },
    )
    _resume_if_possible(engine, record, run_dir, spec)
    record.save(run_dir)  # the run folder and its first record exist before anything follows the run
    callbacks.on_run_start(RunInfo(spec.run_id, run_dir, spec.to_dict(), start_epoch=engine.state.epoch))
    try:
        state = train(engine, record, run_dir, data.seconds, callbacks)
        t_eval = time.perf_counter()
        final = evaluate_final(engine, data, spec, report, device) if state.status == FINISHED else {}
        if final:
            callbacks.on_evaluation(final)
        record.compute = compute_record(spec, report, data, state, final, engine)
        record = write_record(record, state, final, data, run_dir, started, time.perf_counter() - t_eval)
        (run_dir / ERROR_LOG).unlink(missing_ok=True)  # an earlier attempt's failure, now resumed past
    except StorageError as exc:  # a full disk: say what survives and how to continue
        callbacks.on_run_end({**record.to_dict(), "status": FAILED}, [])
        raise StorageError(
            f"{exc}; the run's earlier records and checkpoint are intact: run the same command again "
            "to resume once there is space",
            exc.errno,
            exc.strerror,
        ) from None
    except CifarBudgetError:
        callbacks.on_run_end({**record.to_dict(), "status": FAILED}, [])
        raise
    except Exception as exc:  # a bug in a plugin's component (or in this library), mid-run
        callbacks.on_run_end({**record.to_dict(), "status": FAILED}, [])
        raise record_unexpected_failure(record, run_dir, exc) from exc
    except BaseException:  # Ctrl-C, SIGTERM: the record stays "running" and resumes
        callbacks.on_run_end({**record.to_dict(), "status": FAILED}, [])
        raise
    callbacks.on_run_end(
        record.to_dict(), [p for p in (run_dir / "curves.png", run_dir / "confusion.png") if p.exists()]
    )
    return record


def record_unexpected_failure(record: RunResult, run_dir: Path, exc: Exception) -> UnexpectedRunError:
    """Keep what an unexpected exception left: its traceback in ``error.log``, the record marked
    ``failed`` with the error (its history and the last checkpoint stay, so the same command
    resumes the run once the cause is fixed). Returns the one-line error to raise instead."""
    import traceback

    from cifarbudget.io import atomic_write_text

    what = describe(exc)
    log_path = run_dir / ERROR_LOG
    kept = f"the traceback is in {log_path}"
    try:
        atomic_write_text(log_path, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        record.status, record.error = FAILED, f"stopped by {what} (traceback in {ERROR_LOG})"
        record.save(run_dir)
    except (CifarBudgetError, OSError) as write_error:  # e.g. a full disk: say so, the checkpoint stays
        kept = f"its traceback could not be written ({write_error})"
    return UnexpectedRunError(
        f"{record.run_id}: stopped by an unexpected {what}; {kept}. Its records and last checkpoint are "
        "kept: fix the cause (a plugin's component?) and run the same command again to resume",
        exc,
    )


def run_identity(spec: RunSpec) -> dict[str, Any]:
    """What the run id hashes, recorded beside it (docs/results.md, "identity")."""
    from cifarbudget.identity import IDENTITY_VERSION, training_identity

    return {"version": IDENTITY_VERSION, "config_id": spec.config_id, "training": training_identity(spec)}


def component_provenance(spec: RunSpec) -> list[dict[str, Any]]:
    """Which plugin (and which distribution, at which version) provided each component of the run."""
    from cifarbudget.plugins import get_plugin_system

    system = get_plugin_system()
    used = [("models", spec.model), ("datasets", spec.dataset), ("schedulers", spec.sched), ("tta", spec.tta)]
    used += [("augmentations", a) for a in spec.augs]
    used += [("optimizers", spec.optimizer), ("losses", spec.loss)]
    out = []
    for kind, name in used:
        plugin = system.registry(kind).get(name).plugin
        info = system.infos.get(plugin)
        out.append(
            {
                "kind": kind,
                "name": name,
                "plugin": plugin,
                "distribution": info.distribution if info else None,
                "version": info.version if info else None,
            }
        )
    return out


def needs_tta_evaluation(record: RunResult, spec: RunSpec) -> bool:
    """Whether a finished run still lacks an evaluation with the spec's TTA policy and parameters
    (the run, a sweep's plan and its workers all ask this: TTA never trains again)."""
    return record.status == FINISHED and spec.tta != "none" and spec.tta_key not in tta_evaluated(record)


def tta_evaluated(record: RunResult) -> set[str]:
    """The TTA policies a record has evaluations for."""
    final = record.final
    done = set(final.get("tta_evals") or {})
    if final.get("test_acc_tta") is not None and final.get("tta"):
        done.add(final["tta"])
    return done


def add_tta_evaluation(
    record: RunResult, spec: RunSpec, root: Path, settings: RunSettings, report: BudgetReport
) -> RunResult:
    """Evaluate a finished run's checkpoint with another TTA policy: TTA is evaluation only, so a
    spec that differs from a finished run only in TTA is never trained again."""
    from cifarbudget.api import create_model
    from cifarbudget.engine import load_weights

    run_dir = settings.results_dir / spec.run_id
    log.info(
        "%s: already finished; evaluating its checkpoint with TTA %s (no training)", spec.run_id, spec.tta_key
    )
    device = resolve_device(
        settings.device,
        amp=settings.amp,
        channels_last=settings.channels_last,
        deterministic=settings.deterministic,
    )
    configure_backends(device)
    data = load_data(spec, root, settings.download, device)
    if data.info["mean"] != record.data.get("mean") or data.info["n_test"] != record.data.get("n_test"):
        raise RunError(
            f"{spec.run_id}: the data differ from the ones the run was trained on; rerun with --restart"
        )
    model = create_model(spec.model, num_classes=spec.num_classes or len(data.classes), **spec.model_params)
    load_weights(model, run_dir / CHECKPOINT, run_id=spec.run_id, ema=spec.ema > 0)
    model = model.to(device.device, memory_format=device.memory_format)  # type: ignore[call-overload]  # torch's stubs omit Module.to(device, memory_format=...)
    entry = evaluate_tta(model, data, spec.tta, report, device, params=spec.tta_params)
    # an evaluation added to a finished record carries its own provenance (the record's manifest
    # is the training's): when, with which code, on what
    entry["evaluated"] = {
        "at": now(),
        "git_revision": git_revision(),
        "device_name": device_name(device.device),
        "command": " ".join(sys.argv),
    }
    record.final.setdefault("tta_evals", {})[spec.tta_key] = entry
    record.save(run_dir)
    return record


def check_tracker_names(names: Iterable[str]) -> None:
    """An unknown ``--track`` name is one line with close matches (:class:`UnknownNameError`)."""
    registry = get_registry("callbacks")
    for name in names:
        registry.get(name)


def build_callbacks(names: tuple[str, ...], objects: tuple[Any, ...] = ()) -> Any:
    """The run's callbacks (``--track`` names, then callback objects), each guarded: a failing
    callback warns once and is switched off. A factory that raises is one warning and no callback;
    the library's own errors (an unknown name, a missing extra) still stop the run before it starts."""
    from cifarbudget.trackers import RunCallbacks

    registry = get_registry("callbacks")
    built = []
    for name in dict.fromkeys(names):
        try:
            built.append((name, registry.create(name)))
        except CifarBudgetError:
            raise
        except Exception as exc:  # a plugin's tracker that cannot start: the run goes on without it
            log.warning(
                "tracker %r (plugin %r) could not start (%s); the run goes on without it",
                name,
                registry.get(name).plugin,
                describe(exc, with_source=False),
            )
    check_callback_objects(objects)
    built += [(str(getattr(cb, "name", type(cb).__name__)), cb) for cb in objects]
    return RunCallbacks(built, warn=lambda message: log.warning("%s", message))


def check_callback_objects(objects: tuple[Any, ...]) -> None:
    """Each of ``objects`` is a callback instance: a name, a class or an unrelated object here
    would never be called, silently."""
    hooks = ("on_run_start", "on_epoch_end", "on_evaluation", "on_run_end")
    for cb in objects:
        if isinstance(cb, str):
            raise RunError(
                f"callbacks takes callback objects, not names ({cb!r}): pass registered trackers by "
                f"name with track=[{cb!r}]"
            )
        if isinstance(cb, type):
            raise RunError(
                f"callbacks takes callback objects: pass an instance of {cb.__name__}, not the class"
            )
        if not any(callable(getattr(cb, hook, None)) for hook in hooks):
            raise RunError(f"callback {cb!r} has none of the methods {', '.join(hooks)}")


# --- check ---------------------------------------------------------------------------------------
def check_component_params(spec: RunSpec) -> None:
    """Every ``--*-param`` key is one its component accepts, and every parameter a component needs
    is given: a typo or an omission fails here, before any data loads."""
    from cifarbudget.registry import check_params

    for kind, name, params, flag in (
        ("models", spec.model, spec.model_params, "--model-param "),
        ("optimizers", spec.optimizer, spec.opt_params, "--opt-param "),
        ("schedulers", spec.sched, spec.sched_params, "--sched-param "),
        ("losses", spec.loss, spec.loss_params, "--loss-param "),
    ):
        registry = get_registry(kind)
        factory = registry.get(name).factory
        check_params(
            f"{registry.kind} {name!r}",
            factory,
            params,
            RUN_SUPPLIED[kind],
            flag=flag,
            positional=RUN_POSITIONAL.get(kind, 0),
        )
    for aug in spec.aug_params:
        if aug not in spec.augs:
            raise RunError(f"--aug-param {aug}.*: {aug!r} is not in the pipeline {spec.pipeline}")
    for aug in spec.augs:
        factory = get_registry("augmentations").get(aug).factory
        params = spec.aug_params.get(aug, {})
        check_params(
            f"augmentation {aug!r}",
            factory,
            params,
            RUN_SUPPLIED["augmentations"],
            flag=f"--aug-param {aug}.",
        )
    check_tta_params(spec.tta, spec.tta_params)


def check_tta_params(name: str, params: dict[str, Any]) -> None:
    """``params`` are parameters TTA policy ``name`` takes, and all it needs (and ``name`` is a
    registered policy)."""
    from cifarbudget.registry import check_params

    factory = get_registry("tta").get(name).factory  # an unknown name: one line with close matches
    if params and name == "none":
        raise RunError("--tta-param needs a TTA policy (--tta NAME): the run has none")
    check_params(f"TTA policy {name!r}", factory, params, RUN_SUPPLIED["tta"], flag="--tta-param ")


def dataset_metadata(dataset: str, root: Path) -> dict[str, Any] | None:
    """The dataset's ``metadata(root)`` (classes, split sizes, fingerprint), known before any image
    is decoded; ``None`` for a dataset that does not describe itself."""
    factory = get_registry("datasets").get(dataset).factory
    describe = getattr(factory, "metadata", None)
    return describe(root) if callable(describe) else None


def dataset_num_classes(dataset: str, root: Path) -> int | None:
    """The dataset's class count from its metadata, before any image is decoded (None: unknown)."""
    meta = dataset_metadata(dataset, root)
    if not meta:
        return None
    n = meta.get("num_classes") or len(meta.get("classes") or [])
    return int(n) if n else None


def check_sizes(spec: RunSpec, n_train: int) -> None:
    """Refuse sizes the run cannot honour, with the limit in the message (before any training)."""
    val = validation_size(spec, n_train)
    if val >= n_train:
        raise RunError(f"--val-size {spec.val_size} must be smaller than the {n_train:,} training images")
    left = n_train - val
    if spec.train_subset > left:
        raise RunError(
            f"--train-subset {spec.train_subset:,} exceeds the {left:,} training images left after "
            f"the {val:,}-image validation split"
        )
    train = spec.train_subset or left
    if spec.batch_size > train:
        raise RunError(f"--batch-size {spec.batch_size:,} is larger than the {train:,} training images")


def validate_components(spec: RunSpec) -> None:
    """Build the cheap components once (augmentations, TTA policy, the loss, the optimizer on a
    stand-in model) so a bad parameter value fails here, before any data is decoded; the run
    builds them again after seeding."""
    from cifarbudget.registry import call_with_params

    registry = get_registry("augmentations")
    for name in spec.augs:
        factory = registry.get(name).factory
        call_with_params(f"augmentation {name!r}", factory, spec.aug_params.get(name, {}))
    check_tta_policy(spec)
    loss = get_registry("losses").get(spec.loss).factory
    call_with_params(f"loss {spec.loss!r}", loss, spec.loss_params)  # kd: the teacher run is read here
    check_optimizer(spec)


def _stand_in_model(num_classes: int = 10) -> torch.nn.Module:
    """A small CNN (a convolution, a BatchNorm, a linear head) that components are tried on."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def check_tta_policy(spec: RunSpec) -> None:
    """Build the run's TTA policy and run it on a stand-in (2 random normalised images, the small
    CNN of :func:`_stand_in_model`), so that a policy that raises, or returns something other than
    logits ``(N, C)``, is one line before training rather than a failure after it. A policy that
    fails only on the real model or data (memory) still fails at the run's evaluation."""
    if spec.tta == "none":
        return
    entry = get_registry("tta").get(spec.tta)
    where = f"TTA policy {spec.tta!r} (plugin {entry.plugin})"
    policy = build_tta(spec.tta, {"mean": [0.5] * 3, "std": [0.25] * 3}, spec.tta_params)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            logits = policy(_stand_in_model(10).eval(), images)
    except CifarBudgetError:
        raise
    except Exception as exc:  # a plugin's policy: one line now, not a traceback after training
        raise RunError(
            f"{where} fails on a stand-in batch (2 random images, a small 10-class CNN), so it would "
            f"fail after training: {describe(exc)}"
        ) from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, 10):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise RunError(
            f"{where} returned {got} for 2 images and a 10-class stand-in model, not logits (2, 10)"
        )


def check_optimizer(spec: RunSpec) -> None:
    """Build the run's optimizer on a small stand-in model (:func:`_stand_in_model`), so that a bad
    ``--opt-param`` value fails before any data is decoded, as :func:`check_schedule` does for the
    schedule. Only the library's own errors are raised here: a plugin's factory that needs more of
    the real model than the stand-in has is judged by the run's own build."""
    stand_in = _stand_in_model(10)
    try:
        build_optimizer(spec, stand_in, stand_in=True)
    except CifarBudgetError:
        raise
    except Exception as exc:  # not the user's value: the real build decides
        log.debug("optimizer %r not checked on a stand-in model: %s", spec.optimizer, exc)


def check_spec_budget(spec: RunSpec, root: Path) -> BudgetReport:
    """Count the model the run will train (its real class count) and refuse it when it is over the
    parameter budget, or when its planned training compute is over ``spec.compute_budget``."""
    meta = dataset_metadata(spec.dataset, root) or {}
    if meta.get("n_train"):
        check_sizes(spec, int(meta["n_train"]))
    n = meta.get("num_classes") or len(meta.get("classes") or [])
    num_classes = spec.num_classes or int(n or 10)
    report = check_budget(spec.model, spec.budget, num_classes=num_classes, model_params=spec.model_params)
    if not report.within_budget and not spec.allow_over_budget:
        raise OverBudgetError(
            f"refusing to train: {report.reason}; pass --allow-over-budget to train it anyway"
        )
    if meta.get("n_train"):
        check_compute_budget(spec, report, int(meta["n_train"]))
        n_train = training_split_size(spec, int(meta["n_train"]))
        check_schedule(spec, steps_per_epoch(n_train, spec.batch_size))
    return report


def check_schedule(spec: RunSpec, steps: int) -> None:
    """Build the run's schedule on a stand-in optimizer, so that a schedule the run cannot have
    (e.g. 'onecycle' with fewer than 3 steps, an unknown parameter) fails before any data is
    decoded; the run builds it again on its real optimizer."""
    stand_in = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=spec.lr)
    build_scheduler(spec, stand_in, steps)


def check_compute_budget(spec: RunSpec, report: BudgetReport, n_train_total: int) -> dict[str, Any]:
    """The planned training compute; refuse a plan over the spec's compute budget (exit code 3)."""
    from cifarbudget.budget import format_macs

    plan = planned_training(spec, report.macs, n_train_total, report.num_classes)
    if spec.compute_budget and plan["train_macs"] > spec.compute_budget:
        if "forward_macs_per_epoch" in plan:  # progressive resizing: the mean over the epochs
            macs = f"{format_macs(sum(plan['forward_macs_per_epoch']) / spec.epochs)} (mean over the epochs' sizes)"
        else:
            macs = format_macs(report.macs)
        raise OverBudgetError(
            f"refusing to train: {spec.model} for {plural(spec.epochs, 'epoch')} on {plan['train_images'] // spec.epochs:,} "
            f"images plans {format_macs(plan['train_macs'])} training MACs "
            f"(3 x {macs} x {plan['train_images']:,} images"
            + (f" x {plan['passes_per_step']} passes" if plan["passes_per_step"] > 1 else "")
            + f") > compute budget {format_macs(spec.compute_budget)}"
        )
    return plan


def _recheck_budget(spec: RunSpec, report: BudgetReport, n_classes: int) -> BudgetReport:
    """The budget of the model as it will be trained, once the data says how many classes it has."""
    num_classes = spec.num_classes or n_classes
    if report.num_classes == num_classes:
        return report
    report = check_budget(spec.model, spec.budget, num_classes=num_classes, model_params=spec.model_params)
    if not report.within_budget and not spec.allow_over_budget:
        raise OverBudgetError(
            f"refusing to train: {report.reason}; pass --allow-over-budget to train it anyway"
        )
    return report


def _settled_record(run_dir: Path, restart: bool) -> RunResult | None:
    """A finished or diverged record of this run (returned as is), or None to train (or resume)."""
    if restart and run_dir.exists():
        # the record first: a deletion cut short (a kill) must not leave a "finished" record
        # without its checkpoint, which a plain rerun would take as done
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
        shutil.rmtree(run_dir)
    if not (run_dir / RESULT_FILE).exists():
        return None
    try:
        previous = load_result(run_dir)
    except CifarBudgetError:
        return None  # a corrupt record: the checkpoint (if any) decides
    return previous if previous.status in SETTLED else None


def cpu_training_seconds(spec: RunSpec, report: BudgetReport, n_train: int) -> float:
    """A rough CPU training time: the run's training MACs (each epoch at its input size, and each
    of the optimizer's passes per step: SAM's two) at :data:`CPU_MACS_PER_SECOND` per core."""
    cores = max(1, torch.get_num_threads())
    macs = sum(forward_macs_per_epoch(spec, report.macs, report.num_classes)) * passes_per_step(spec)
    return TRAIN_FACTOR * macs * images_per_epoch(n_train, spec.batch_size) / (CPU_MACS_PER_SECOND * cores)


def _warn_cpu(spec: RunSpec, report: BudgetReport, n_train: int) -> None:
    seconds = cpu_training_seconds(spec, report, n_train)
    if seconds < 60:
        return
    hours = seconds / 3600
    when = f"{hours:.1f} h" if hours >= 1 else f"{seconds / 60:.0f} min"
    log.warning("training on the CPU: expect roughly %s; a CUDA GPU is 100x+ faster", when)


# --- load ----------------------------------------------------------------------------------------
@dataclass
class RunData:
    """The run's splits on the training device, and what the record says about them."""

    train: DeviceSplit
    val: DeviceSplit
    test: DeviceSplit
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def load_splits(dataset: str, root: Path, download: bool) -> tuple[Split, Split]:
    """The dataset's train and test splits, checked against the dataset contract."""
    factory = get_registry("datasets").get(dataset).factory
    train = as_split(factory(root, train=True, download=download), dataset, "train")
    test = as_split(factory(root, train=False, download=download), dataset, "test")
    if list(train.classes) != list(test.classes):
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        differ = (
            f"only in train: {', '.join(only_train) or '-'}; only in test: {', '.join(only_test) or '-'}"
            if only_train or only_test
            else "the same names in another order"
        )
        raise DataError(f"dataset {dataset!r}: train and test splits have different classes ({differ})")
    train_size, test_size = tuple(train.images.shape[-2:]), tuple(test.images.shape[-2:])
    if train_size != test_size:  # the model would be tested on inputs it never saw, and costed wrongly
        raise DataError(
            f"dataset {dataset!r}: train images are {train_size[0]}x{train_size[1]}, test images "
            f"{test_size[0]}x{test_size[1]}: both splits must have one image size"
        )
    return train, test


def load_data(spec: RunSpec, root: Path, download: bool, device: DeviceSettings) -> RunData:
    """Load the splits, hold out the validation split, subset, normalise and move to the device."""
    t0 = time.perf_counter()
    train_full, test = load_splits(spec.dataset, root, download)
    check_sizes(spec, len(train_full))
    train_idx, val_idx = stratified_split(
        train_full.labels, validation_size(spec, len(train_full)), spec.seed
    )
    if spec.train_subset:
        gen = torch.Generator().manual_seed(spec.seed + 1)
        train_idx = (
            train_idx[torch.randperm(len(train_idx), generator=gen)[: spec.train_subset]].sort().values
        )
    train_split, val_split = subset(train_full, train_idx), subset(train_full, val_idx)
    mean, std = normalization_stats(train_split.images)

    def to_device(split: Split) -> DeviceSplit:
        return DeviceSplit.from_split(split, device.device, mean, std, device.channels_last)

    classes = list(train_full.classes)
    info = {
        "dataset": spec.dataset,
        "source": getattr(train_full, "source", ""),
        "classes": classes,
        "n_train": len(train_split),
        "n_val": len(val_split),
        "n_test": len(test),
        "image_size": [int(v) for v in train_full.images.shape[-2:]],  # (H, W): what export traces
        "val_indices_sha256": _digest(val_idx),
        "mean": mean,
        "std": std,
    }
    return RunData(
        to_device(train_split),
        to_device(val_split),
        to_device(test),
        classes,
        info,
        time.perf_counter() - t0,
    )


def _digest(indices: torch.Tensor) -> str:
    return hashlib.sha256(indices.cpu().numpy().astype("int64").tobytes()).hexdigest()[:16]


# --- build ---------------------------------------------------------------------------------------
def build(
    spec: RunSpec, data: RunData, device: DeviceSettings, run_dir: Path, progress: bool
) -> tuple[Engine, list[dict[str, Any]]]:
    """Model, augmentation pipeline, optimizer, schedule, loss and the engine that trains them.

    Everything random is drawn right after seeding, in a fixed order (weights, then any
    augmentation that draws at construction), so a resumed run rebuilds the same objects.
    """
    from cifarbudget.api import create_model
    from cifarbudget.augment.pipeline import Compose, soft_targets

    num_classes = spec.num_classes or len(data.classes)
    torch.manual_seed(spec.seed)
    if device.device.type == "cuda":
        torch.cuda.manual_seed_all(spec.seed)
    model = create_model(spec.model, num_classes=num_classes, **spec.model_params)
    registry = get_registry("augmentations")
    augs = [registry.create(name, **spec.aug_params.get(name, {})) for name in spec.augs]
    pipeline = Compose(augs, list(spec.augs), normalize=data.train.normalize)
    # the uint8 layout the pipeline runs fastest on, held once (the engine would lay out a copy)
    data.train = laid_out_for(data.train, pipeline)
    pipeline_info = [
        {"name": name, "params": aug.params() if hasattr(aug, "params") else {}}
        for name, aug in zip(spec.augs, augs, strict=True)
    ]
    model = model.to(device.device, memory_format=device.memory_format)  # type: ignore[call-overload]  # torch's stubs omit Module.to(device, memory_format=...)
    init_from_data(model, data.train)
    optimizer = build_optimizer(spec, model)
    scheduler = build_scheduler(spec, optimizer, steps_per_epoch(len(data.train), spec.batch_size))
    engine = Engine(
        TrainPlan(spec.run_id, spec.epochs, spec.batch_size, spec.ema),
        model,
        optimizer,
        scheduler,
        train=data.train,
        val=data.val,
        pipeline=pipeline,
        targets=lambda y: soft_targets(y, num_classes, spec.label_smoothing),
        settings=device,
        checkpoint=run_dir / CHECKPOINT,
        loss=build_loss(spec, device, data),
        progress=progress,
    )
    return engine, pipeline_info


INIT_IMAGES = 5000  # training images shown to a model's init_from_data (airbench's whitening uses 5,000)


def init_from_data(model: torch.nn.Module, train: DeviceSplit) -> None:
    """The optional model protocol ``model.init_from_data(images)``: a data-dependent initialisation
    (e.g. whitening the first convolution), given the first normalised, un-augmented training
    images, before the first step. Deterministic, so a resumed run (whose checkpoint then
    replaces the weights) builds the same model."""
    init = getattr(model, "init_from_data", None)
    if callable(init):
        with torch.no_grad():
            init(train.normalize(train.images[:INIT_IMAGES]))


def build_optimizer(
    spec: RunSpec, model: torch.nn.Module, *, stand_in: bool = False
) -> torch.optim.Optimizer:
    """The registered optimizer with the run's hyperparameters and ``--opt-param`` values.

    A value the factory cannot use is one line (:func:`~cifarbudget.registry.call_with_params`);
    on a ``stand_in`` model (:func:`check_optimizer`) the factory's own exceptions propagate."""
    from cifarbudget.registry import call_with_params, check_params

    factory = get_registry("optimizers").get(spec.optimizer).factory
    check_params(
        f"optimizer {spec.optimizer!r}",
        factory,
        spec.opt_params,
        RUN_SUPPLIED["optimizers"],
        positional=RUN_POSITIONAL["optimizers"],
    )
    run_args = {
        "lr": spec.lr,
        "momentum": spec.momentum,
        "weight_decay": spec.weight_decay,
        "nesterov": spec.nesterov,
    }
    if stand_in:
        return factory(model, **run_args, **spec.opt_params)
    return call_with_params(f"optimizer {spec.optimizer!r}", factory, spec.opt_params, model, **run_args)


def build_scheduler(spec: RunSpec, optimizer: torch.optim.Optimizer, steps: int) -> Any:
    """The registered schedule, stepped once per optimizer step; ``--warmup`` only when asked."""
    from cifarbudget.registry import accepted_params, call_with_params, check_params

    factory = get_registry("schedulers").get(spec.sched).factory
    warmup = {"warmup_epochs": spec.warmup_epochs} if spec.warmup_epochs else {}
    check_params(
        f"scheduler {spec.sched!r}",
        factory,
        spec.sched_params,
        RUN_SUPPLIED["schedulers"],
        positional=RUN_POSITIONAL["schedulers"],
    )
    no_warmup = RunError(f"scheduler {spec.sched!r} does not support a warmup; drop --warmup")
    takes = accepted_params(factory)
    if warmup and takes is not None and "warmup_epochs" not in takes:
        raise no_warmup
    try:
        return call_with_params(
            f"scheduler {spec.sched!r}",
            factory,
            spec.sched_params,
            optimizer,
            epochs=spec.epochs,
            steps_per_epoch=steps,
            **warmup,
        )
    except TypeError as exc:  # a factory taking **kwargs that refuses warmup_epochs itself
        if warmup and "warmup_epochs" in str(exc):
            raise no_warmup from None
        raise


def build_loss(spec: RunSpec, device: DeviceSettings, data: RunData) -> Any:
    """The registered loss with ``--loss-param`` values, set up with the device and normalisation."""
    from cifarbudget.registry import call_with_params, check_params

    factory = get_registry("losses").get(spec.loss).factory
    check_params(f"loss {spec.loss!r}", factory, spec.loss_params, RUN_SUPPLIED["losses"])
    loss = call_with_params(f"loss {spec.loss!r}", factory, spec.loss_params)
    setup = getattr(loss, "setup", None)
    if callable(setup):
        setup(device=device.device, mean=data.info["mean"], std=data.info["std"])
    return loss


# --- train ---------------------------------------------------------------------------------------
def _resume_if_possible(engine: Engine, record: RunResult, run_dir: Path, spec: RunSpec) -> None:
    """Continue from the run's checkpoint when there is one, keeping the first segment's start time."""
    if not engine.checkpoint.exists():
        log.info("%s: %s", spec.run_id, spec.describe())
        return
    try:
        engine.load_checkpoint()
    except RunError as exc:
        raise RunError(f"cannot resume {spec.run_id}: {exc}; rerun with --restart") from None
    with contextlib.suppress(CifarBudgetError):  # the previous record is informative only
        earlier = load_result(run_dir).manifest
        # every segment of a resumed run keeps its own manifest (machine, versions, revision, flags)
        record.manifest["segments"] = [
            *earlier.get("segments", []),
            {k: v for k, v in earlier.items() if k != "segments"},
        ]
        record.manifest["started_at"] = earlier.get("started_at", record.manifest["started_at"])
        before = (earlier.get("engine") or {}).get("aug_chunk", 1)
        now = (record.manifest.get("engine") or {}).get("aug_chunk", 1)
        if before != now:
            log.warning(
                "%s: resuming with --aug-chunk %s after starting with %s: the remaining epochs draw "
                "other augmentations than an uninterrupted run would (the same distribution)",
                spec.run_id,
                now,
                before,
            )
    record.manifest["resumed_at_epoch"] = engine.state.epoch
    record.history = list(engine.state.history)  # the record written next keeps the epochs done
    log.info("%s: resuming after epoch %d of %d", spec.run_id, engine.state.epoch, spec.epochs)


def train(
    engine: Engine, record: RunResult, run_dir: Path, data_seconds: float, callbacks: Any
) -> TrainState:
    """Train the remaining epochs, writing the record after every epoch's checkpoint."""

    def on_epoch(state: TrainState) -> None:
        record.status = RUNNING if state.status == FINISHED else state.status
        record.history = state.history
        record.timing = {"train_seconds": state.train_seconds, "data_seconds": data_seconds}
        record.save(run_dir)
        callbacks.on_epoch_end(state.epoch, dict(state.history[-1]))

    return engine.fit(on_epoch=on_epoch)


# --- evaluate ------------------------------------------------------------------------------------
def evaluate_final(
    engine: Engine, data: RunData, spec: RunSpec, report: BudgetReport, device: DeviceSettings
) -> dict[str, Any]:
    """Validation (for selection) and the test split, once, without and with the run's TTA policy.

    Also the calibration of the plain predictions: ECE (15 bins) and NLL on validation and test,
    and with the temperature fitted on validation (temperature scaling) when there is one.
    """
    model, n = engine.eval_model, len(data.classes)
    final: dict[str, Any] = {"tta": spec.tta_key, "tta_views": 1, "inference_macs": report.macs}
    val = evaluate(model, data.val, device, return_logits=True) if len(data.val) else None
    if val is not None:
        best = max(engine.state.history, key=lambda h: h.get("val_acc", -1))
        final.update(
            val_acc=val["acc"],
            val_loss=val["loss"],
            best_val_acc=best.get("val_acc"),
            best_epoch=best.get("epoch"),
        )
    plain = evaluate(model, data.test, device, return_logits=True)
    final.update(
        test_acc=plain["acc"],
        test_loss=plain["loss"],
        confusion_matrix=confusion_matrix(plain["predictions"], data.test.labels, n),
        calibration=calibration_record(val, data.val, plain, data.test),
    )
    if spec.tta != "none":
        entry = evaluate_tta(model, data, spec.tta, report, device, params=spec.tta_params)
        final["tta_evals"] = {spec.tta_key: entry}
        final.update(
            tta_views=entry["views"],
            test_acc_tta=entry["test_acc"],
            test_loss_tta=entry["test_loss"],
            confusion_matrix_tta=entry["confusion_matrix"],
        )
        if "val_acc" in entry:
            final.update(val_acc_tta=entry["val_acc"], val_loss_tta=entry["val_loss"])
    final["inference_macs_tta"] = round(report.macs * final["tta_views"])
    return final


def calibration_record(
    val: dict[str, Any] | None, val_split: DeviceSplit, test: dict[str, Any], test_split: DeviceSplit
) -> dict[str, Any]:
    """ECE/NLL on validation and test; temperature scaling fitted on validation; the test's reliability bins."""
    from cifarbudget.calibration import calibration_bins, calibration_metrics, fit_temperature

    test_labels = test_split.labels.cpu().numpy()
    out: dict[str, Any] = {"bins": 15}
    temperature = None
    if val is not None:
        val_labels = val_split.labels.cpu().numpy()
        temperature = fit_temperature(val["logits"].numpy(), val_labels)
        out["val"] = calibration_metrics(val["logits"].numpy(), val_labels, temperature)
    out["test"] = calibration_metrics(test["logits"].numpy(), test_labels, temperature)
    out["temperature"] = temperature
    out["test_reliability"] = calibration_bins(
        test["logits"].numpy(), test_labels, from_logits=True
    ).to_dict()
    return out


def evaluate_tta(
    model: torch.nn.Module,
    data: RunData,
    name: str,
    report: BudgetReport,
    device: DeviceSettings,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's model through TTA policy ``name`` (with ``params``) on validation and test, with its
    measured cost. The entry records the policy and the parameters given (``policy``, ``tta_params``:
    what reproduces it) and the policy's full parameters (``params``)."""
    policy = build_tta(name, data.info, params)
    entry: dict[str, Any] = {}
    if len(data.val):
        val = evaluate(model, data.val, device, tta=policy)
        entry.update(val_acc=val["acc"], val_loss=val["loss"])
    before = getattr(policy, "views_computed", None)
    test = evaluate(model, data.test, device, tta=policy)
    after = getattr(policy, "views_computed", None)
    # the views actually computed per test image (selective TTA runs extra views on some only)
    views = (after - before) / len(data.test) if after is not None and before is not None else policy.n_views
    entry.update(
        test_acc=test["acc"],
        test_loss=test["loss"],
        views=views,
        inference_macs=round(report.macs * views),
        confusion_matrix=confusion_matrix(test["predictions"], data.test.labels, len(data.classes)),
        params=policy.params() if hasattr(policy, "params") else {},
        policy=name,
        tta_params=dict(params or {}),
    )
    return entry


def compute_record(
    spec: RunSpec,
    report: BudgetReport,
    data: RunData,
    state: TrainState,
    final: dict[str, Any],
    engine: Engine,
) -> dict[str, Any]:
    """Training compute spent (and planned) and inference compute, in MACs (:mod:`cifarbudget.compute`)."""
    epochs_done = len(state.history)
    per_epoch = images_per_epoch(len(data.train), spec.batch_size)
    passes = int(getattr(engine.optimizer, "passes_per_step", 1))
    train_images = per_epoch * epochs_done
    epoch_macs = forward_macs_per_epoch(spec, report.macs, report.num_classes)
    teacher = int(getattr(engine.loss, "inference_macs_per_image", 0) or 0)
    inference = {
        "validation_per_epoch": report.macs * len(data.val) * epochs_done,
        "final_evaluation": 0,
        "teacher": teacher * train_images,
    }
    if final:
        views = 1 + float(final.get("tta_views", 1) if spec.tta != "none" else 0)
        inference["final_evaluation"] = round(report.macs * (len(data.val) + len(data.test)) * views)
    record = {
        "definition": "train_macs = 3 x forward MACs (at each epoch's input size) x training images seen x passes per step (docs/results.md)",
        "forward_macs": report.macs,
        "train_images": train_images,
        "passes_per_step": passes,
        "train_macs": TRAIN_FACTOR * per_epoch * passes * sum(epoch_macs[:epochs_done]),
        "planned_train_macs": TRAIN_FACTOR * per_epoch * passes * sum(epoch_macs),
        "inference_macs": inference,
        "inference_macs_total": sum(inference.values()),
    }
    if any(m != report.macs for m in epoch_macs):  # an augmentation resized the inputs of some epochs
        record["forward_macs_per_epoch"] = epoch_macs
    return record


def build_tta(name: str, data_info: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
    """The registered TTA policy built with ``params``, given the run's normalisation when it asks
    for it (``setup``)."""
    from cifarbudget.registry import call_with_params

    policy = call_with_params(f"TTA policy {name!r}", get_registry("tta").get(name).factory, params or {})
    setup = getattr(policy, "setup", None)
    if callable(setup):
        setup(mean=data_info["mean"], std=data_info["std"])
    return policy


# --- record --------------------------------------------------------------------------------------
def write_record(
    record: RunResult,
    state: TrainState,
    final: dict[str, Any],
    data: RunData,
    run_dir: Path,
    started: float,
    eval_seconds: float,
) -> RunResult:
    """Write the final ``result.json`` and ``metrics.csv``, then the plots (a failed plot only warns)."""
    spec = record.spec
    images = sum(h.get("images_per_s", 0) * h.get("seconds", 0) for h in state.history)
    record.status = state.status
    record.history = state.history
    record.final = final
    record.timing = {
        "train_seconds": state.train_seconds,
        "train_images_per_s": images / state.train_seconds if state.train_seconds else 0.0,
        "data_seconds": data.seconds,
        "eval_seconds": eval_seconds,
        "total_seconds": time.perf_counter() - started,
    }
    record.manifest["finished_at"] = now()
    if state.status == DIVERGED:
        record.error = f"loss became non-finite in epoch {state.epoch} (lr {spec['lr']:g}); lower --lr"
    _plot(record, data.classes, run_dir)  # before the final record: "finished" is written last
    record.save(run_dir)
    return record


def _plot(record: RunResult, classes: list[str], run_dir: Path) -> None:
    from cifarbudget.plots import plot_confusion, plot_curves

    spec, final = record.spec, record.final
    pipeline = "+".join(spec["augs"]) or "no aug"
    title = f"{spec['model']} | {pipeline} | {spec['sched']} | {spec['epochs']} ep | {spec['dataset']}"
    with_tta = bool(final.get("confusion_matrix_tta"))
    matrix = final.get("confusion_matrix_tta") if with_tta else final.get("confusion_matrix")
    acc = final.get("test_acc_tta") if with_tta else final.get("test_acc")
    policy = str(final.get("tta") or spec.get("tta")) if with_tta else None
    try:
        plot_curves(record.history, run_dir / "curves.png", title)
        if matrix and acc is not None:  # titled "test accuracy 0.8767 (TTA flip)" or "(no TTA)"
            plot_confusion(matrix, classes, run_dir / "confusion.png", title, test_acc=acc, tta=policy)
    except Exception as exc:  # the record is written; a missing picture is not worth failing the run
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else describe(exc)
        log.warning("could not write the plots of %s: %s", record.run_id, why)

"""Leaderboards from run records: seeds -> mean, std and 95% CI; honest ranking; Pareto fronts;
ablations; formats.

Data flows in three steps, each a plain function over pandas frames::

    runs, warnings = load_results(["results/runs"])  # one row per run and evaluated TTA policy
    board = leaderboard(runs, budget=5_000_000)        # one row per configuration (identity minus seed)
    text = format_frame(board, "markdown")             # or csv, html, json

A *configuration* is a run's training identity without the seed (``config_id``, recorded with
the run: :mod:`cifarbudget.identity`) plus the TTA policy it is evaluated with, so runs that
differ only in their seed are aggregated together. The board decides the budget: every run is
judged against the board's budget (default 5M), whatever budget it was trained under. Only
finished, within-budget runs are ranked; :func:`not_ranked` lists the others with the reason.

Ranking is honest: configurations are ranked *within each dataset* by their mean **validation**
accuracy (with their TTA policy, if any), never by test accuracy, which is shown beside it;
configurations without a validation split are ranked by test accuracy and marked
(``selected_on = "test"``). ``tied`` marks configurations whose mean is not significantly
different from the best of their dataset (Welch's t-test, two-sided, 5%); the best is the first
row with at least two seeds; one-seed rows cannot be tested and are marked ``one_seed``. Every
row carries ``rerun``: the command that reproduces its runs. The statistics are documented in
``docs/leaderboard.md``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cifarbudget.errors import CifarBudgetError
from cifarbudget.results import (
    DIVERGED,
    FAILED,
    FINISHED,
    RESULT_FILE,
    RUNNING,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
)

log = logging.getLogger(__name__)

FORMATS = ("markdown", "csv", "html", "json")
DEFAULT_BUDGET = 5_000_000
# --pareto NAME -> the cost column (inference-macs: MACs x TTA views actually computed)
PARETO_COSTS = {"params": "params", "macs": "macs", "inference-macs": "inference_macs_tta"}

# Spec fields in the order a reader expects them; spec fields not listed (added later) follow.
SPEC_ORDER = (
    "model",
    "dataset",
    "augs",
    "sched",
    "tta",
    "epochs",
    "batch_size",
    "optimizer",
    "loss",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "label_smoothing",
    "ema",
    "warmup_epochs",
    "val_size",
    "train_subset",
    "num_classes",
    "budget",
    "compute_budget",
    "allow_over_budget",
    "aug_params",
    "model_params",
    "sched_params",
    "opt_params",
    "loss_params",
    "data_id",
)
# Always shown in markdown/html; the other spec columns are shown only where they vary.
CORE_KEYS = ("model", "dataset", "augs", "sched", "tta", "epochs")
# Per-run metrics averaged over the seeds of a configuration: (column in the runs frame, with spread?).
MEAN_METRICS = (
    ("select_acc", True),
    ("test_acc", True),
    ("test_acc_tta", True),
    ("val_acc", False),
    ("val_acc_tta", False),
    ("train_seconds", False),
    ("train_images_per_s", False),
)
# A measured throughput, when a result carries one (``timing`` or ``final``); first found wins.
MEASURED_THROUGHPUT_KEYS = ("measured_images_per_s", "inference_images_per_s", "steady_images_per_s")
# Columns that may be absent from old records; created empty so every board has the same shape.
OPTIONAL_RUN_COLUMNS = (
    "val_acc",
    "val_acc_tta",
    "test_acc_tta",
    "tta_views",
    "inference_macs_tta",
    "train_macs",
    "ece",
    "data_dir",
)

# Two-sided 95% Student t quantiles t_{0.975, df} (computed with mpmath, 17 significant digits).
_T975 = {
    1: 12.706204736174705,
    2: 4.3026527297494639,
    3: 3.1824463052837096,
    4: 2.7764451051977944,
    5: 2.5705818356363155,
    6: 2.44691185114497,
    7: 2.3646242515927853,
    8: 2.3060041352041667,
    9: 2.2621571627982055,
    10: 2.2281388519862747,
    11: 2.2009851600916399,
    12: 2.1788128296672289,
    13: 2.1603686564627925,
    14: 2.1447866879178038,
    15: 2.1314495455597757,
    16: 2.1199052992212547,
    17: 2.1098155778333171,
    18: 2.1009220402410385,
    19: 2.0930240544083098,
    20: 2.0859634472658648,
    21: 2.0796138447276804,
    22: 2.0738730679040262,
    23: 2.0686576104190487,
    24: 2.0638985616280258,
    25: 2.0595385527532977,
    26: 2.0555294386428732,
    27: 2.0518305164802856,
    28: 2.0484071417952452,
    29: 2.0452296421327043,
    30: 2.0422724563012383,
    40: 2.0210753903062734,
    60: 2.0002978220142605,
    120: 1.9799304050824408,
}
_Z975 = 1.9599639845400542


def t_quantile_975(df: int) -> float:
    """``t_{0.975, df}``: exact table up to 30 degrees of freedom and at 40, 60, 120.

    In between (and beyond 120, towards the normal quantile 1.95996) it interpolates linearly in
    ``1/df``, which is accurate to about 1e-4. ``df < 1`` gives NaN.
    """
    if df < 1:
        return math.nan
    if df in _T975:
        return _T975[df]
    knots = [(1 / k, v) for k, v in sorted(_T975.items()) if k >= 30] + [(0.0, _Z975)]
    x = 1 / df
    for (x0, y0), (x1, y1) in itertools.pairwise(knots):
        if x1 <= x <= x0:
            return y1 + (y0 - y1) * (x - x1) / (x0 - x1)
    return _Z975  # unreachable: every df > 30 falls between two knots


# --- loading -------------------------------------------------------------------------------------
NOT_RUN_FOLDERS = frozenset({"mlruns", "mlartifacts", "tensorboard", "__pycache__"})


def find_result_files(paths: Iterable[Path | str]) -> tuple[list[Path], list[str]]:
    """Every ``result.json`` under ``paths`` (folders, searched recursively, or result files); a run
    folder's own subfolders and tracker stores (``mlruns``) are not searched."""
    files: list[Path] = []
    warnings: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for root, dirs, names in os.walk(path):
                # hidden folders (locks) and tracker stores (an MLflow store keeps copies of result.json
                # as artifacts) are not runs; nor is anything inside a run folder
                dirs[:] = [d for d in dirs if not d.startswith(".") and d not in NOT_RUN_FOLDERS]
                if RESULT_FILE in names:
                    files.append(Path(root) / RESULT_FILE)
                    dirs[:] = []
        else:
            warnings.append(f"no such file or folder: {path}")
    return sorted(set(files)), warnings


def _cell(value: Any) -> Any:
    """A spec value as one table cell: lists joined with '+', dicts as canonical JSON."""
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def _legacy_config_id(spec: dict[str, Any]) -> str:
    """Schema-1 records: the hash of the raw spec without the seed (their run ids hash the raw spec)."""
    rest = {k: v for k, v in spec.items() if k != "seed"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return "v1-" + hashlib.sha256(canonical.encode()).hexdigest()[:10]


_SOURCE_ROOT = re.compile(r"^[a-z0-9_.\-]+:(.+):(?:train|test)$")


def _device_name(manifest: dict[str, Any]) -> str | None:
    """The recorded device name, with the CPU's family and model where the record has them
    (``manifest.cpu``): ``AMD EPYC (2 threads; family 25 model 17)``. Machines that report the same
    model name can differ by 2x in speed; this keeps their runs apart in the report's devices."""
    name = manifest.get("device_name")
    cpu = manifest.get("cpu") or {}
    if not name or manifest.get("device") != "cpu" or "family" not in cpu or "model" not in cpu:
        return name
    fingerprint = f"family {cpu['family']} model {cpu['model']}"
    return f"{name[:-1]}; {fingerprint})" if name.endswith(")") else f"{name} ({fingerprint})"


def _data_dir(data: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """The data folder the run read (for its rerun command): recorded, or read off the data source."""
    recorded = (manifest.get("settings") or {}).get("data_dir")
    if recorded:
        return str(recorded)
    match = _SOURCE_ROOT.match(str(data.get("source") or ""))
    return match.group(1) if match else None


def flatten_result(data: Any, path: str = "") -> list[dict[str, Any]]:
    """One ``result.json`` object as flat rows, one per TTA policy it was evaluated with (``none``
    when it has none); raises ``ValueError`` when it is not a run record."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("schema") != SCHEMA_NAME:
        raise ValueError(f"not a cifarbudget result (schema {data.get('schema')!r})")
    version = data.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(f"unsupported schema version {version!r}")
    spec, budget = data.get("spec"), data.get("budget")
    if not isinstance(spec, dict) or not isinstance(budget, dict):
        raise ValueError("'spec' or 'budget' is missing")
    for key in ("model", "dataset", "seed"):
        if key not in spec:
            raise ValueError(f"'spec.{key}' is missing")
    params = budget.get("params")
    if not isinstance(params, int) or isinstance(params, bool):  # every verdict reads it
        raise ValueError(f"'budget.params' is not a number of parameters ({params!r})")
    final = data.get("final") or {}
    timing = data.get("timing") or {}
    manifest = data.get("manifest") or {}
    identity = data.get("identity") or {}
    base_config = identity.get("config_id") or _legacy_config_id(spec)  # the training, seed aside
    macs = budget.get("macs")
    calibration = (final.get("calibration") or {}).get("test") or {}
    row: dict[str, Any] = {
        "run_id": data.get("run_id"),
        "status": data.get("status"),
        "schema_version": version,
    }
    for key, value in spec.items():
        if key != "tta_params":  # the row's `tta` names the policy with its parameters
            row[key] = _cell(value)
    if not spec.get("augs"):
        row["augs"] = "none"
    # what the run had, where the spec only asked: the validation split's size (the default 5,000
    # is capped at a tenth of the training images) and the number of classes (0: the data's)
    recorded = data.get("data") or {}
    if isinstance(recorded.get("n_val"), int) and not isinstance(recorded.get("n_val"), bool):
        row["val_size"] = recorded["n_val"]
    if not spec.get("num_classes") and isinstance(budget.get("num_classes"), int):
        row["num_classes"] = budget["num_classes"]
    row.update(
        params=budget.get("params"),
        macs=macs,
        trained_budget=budget.get("budget"),
        val_acc=final.get("val_acc"),
        best_val_acc=final.get("best_val_acc"),
        test_acc=final.get("test_acc"),
        inference_macs=final.get("inference_macs", macs),
        train_macs=(data.get("compute") or {}).get("train_macs"),
        ece=calibration.get("ece"),
        epochs_done=len(data.get("history") or []),
        train_seconds=timing.get("train_seconds"),
        train_images_per_s=timing.get("train_images_per_s"),
        error=data.get("error"),
        device_name=_device_name(manifest),
        git_revision=manifest.get("git_revision"),
        started_at=manifest.get("started_at"),
        data_dir=_data_dir(data.get("data") or {}, manifest),
        spec_json=json.dumps(spec, sort_keys=True),
        path=path,
    )
    for key in MEASURED_THROUGHPUT_KEYS:
        value = timing.get(key, final.get(key))
        if value is not None:
            row["measured_images_per_s"] = value
            break
    evals = dict(final.get("tta_evals") or {})
    if not evals and final.get("test_acc_tta") is not None and final.get("tta"):  # schema-1 records
        evals[final["tta"]] = {
            "test_acc": final.get("test_acc_tta"),
            "val_acc": final.get("val_acc_tta"),
            "views": final.get("tta_views"),
            "inference_macs": final.get("inference_macs_tta"),
        }
    if not evals:  # no TTA (yet: a running record): one row, evaluated plainly
        running = data.get("status") != FINISHED and spec.get("tta", "none") != "none"
        tta = _pending_tta_key(spec) if running else "none"
        return [
            {
                **row,
                "tta": tta,
                "train_config_id": base_config,
                "config_id": f"{base_config}-{tta}",
                "tta_views": 1,
                "inference_macs_tta": macs,
                **({"tta_spec_json": _tta_spec_json(spec["tta"], spec.get("tta_params"))} if running else {}),
            }
        ]
    rows = []
    for policy, result in sorted(evals.items()):
        rows.append(
            {
                **row,
                "tta": policy,
                # what reproduces this evaluation: the policy and the parameters it was given
                # (records from before --tta-param key their evaluations by the policy's name)
                "tta_spec_json": _tta_spec_json(result.get("policy", policy), result.get("tta_params")),
                "train_config_id": base_config,
                "config_id": f"{base_config}-{policy}",
                "val_acc_tta": result.get("val_acc"),
                "test_acc_tta": result.get("test_acc"),
                "tta_views": result.get("views"),
                "inference_macs_tta": result.get("inference_macs"),
            }
        )
    return rows


def _tta_spec_json(policy: str, params: dict[str, Any] | None) -> str:
    """What reproduces a TTA evaluation: the policy and the parameters it was given, as JSON."""
    return json.dumps({"tta": policy, "tta_params": params or {}}, sort_keys=True)


def _pending_tta_key(spec: dict[str, Any]) -> str:
    """The key the TTA evaluation of a run still training will be recorded under (its policy and the
    parameters that differ from the defaults, :func:`cifarbudget.identity.tta_key`); the policy's
    bare name with its parameters as given when the policy cannot be looked up (an uninstalled plugin)."""
    name, params = spec["tta"], spec.get("tta_params") or {}
    if not params:
        return name
    from cifarbudget.identity import format_tta_key, tta_key  # the registry, only for such a run

    try:
        return tta_key(name, params)
    except CifarBudgetError:
        return format_tta_key(name, params)


def _read_one(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        return [], f"skipped {path}: unreadable ({exc.strerror or exc})"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [], f"skipped {path}: corrupt or truncated JSON ({exc})"
    try:
        return flatten_result(data, str(path)), None
    except (ValueError, TypeError, AttributeError) as exc:
        return [], f"skipped {path}: {exc}"


PARALLEL_MIN_FILES = 2000  # below this, a process pool costs more than it saves


def _read_many(files: list[Path]) -> list[tuple[list[dict[str, Any]], str | None]]:
    return [_read_one(f) for f in files]


def _read_parallel(files: list[Path], workers: int) -> list[tuple[list[dict[str, Any]], str | None]]:
    """Parse in ``workers`` forked processes: ``json.loads`` holds the GIL, so threads do not help."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(files) // (4 * workers))
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return [outcome for chunk in pool.map(_read_many, chunks) for outcome in chunk]


def load_results(
    paths: Iterable[Path | str] | Path | str, *, workers: int | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Read every ``result.json`` under ``paths``: one row per run and evaluated TTA policy, and
    one warning per skipped file.

    A corrupt, truncated or foreign file is skipped with a warning naming it; so is a second copy
    of a run id already read (a run counts once however many folders hold it). Records of schema
    1 load with one warning in all: their identities predate resolved-configuration run ids. Never
    raises on bad files; the frame is empty (no columns) when nothing could be read.

    ``workers``: processes that parse the files; by default one per CPU (at most 8) from
    2,000 files on where ``fork`` is available, else none. ``workers=1`` reads in this process.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files, warnings = find_result_files(paths)
    if workers is None:
        import multiprocessing

        parallel = len(files) >= PARALLEL_MIN_FILES and "fork" in multiprocessing.get_all_start_methods()
        workers = min(os.cpu_count() or 1, 8) if parallel else 1
    outcomes = None
    if workers > 1 and len(files) > 1:
        try:
            outcomes = _read_parallel(files, workers)
        except (OSError, RuntimeError, ValueError):  # no fork, no processes, a broken pool: read here
            outcomes = None
    if outcomes is None:
        outcomes = _read_many(files)
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    legacy = 0
    for file_rows, warning in outcomes:
        if warning:
            warnings.append(warning)
        if not file_rows:
            continue
        first = seen.setdefault(file_rows[0]["run_id"], file_rows[0]["path"])
        if first != file_rows[0]["path"]:
            warnings.append(
                f"skipped {file_rows[0]['path']}: run {file_rows[0]['run_id']} already read from {first}"
            )
            continue
        legacy += file_rows[0]["schema_version"] != SCHEMA_VERSION
        rows.extend(file_rows)
    if legacy:
        warnings.append(
            f"{legacy} record(s) of schema 1: their identities predate resolved-configuration run ids "
            "(they rank apart from new runs of the same spec; rerun them to compare like with like)"
        )
    runs = pd.DataFrame.from_records(rows)
    for column in OPTIONAL_RUN_COLUMNS:
        if not runs.empty and column not in runs.columns:
            runs[column] = math.nan
    return runs, warnings


# --- filters and the board's budget ----------------------------------------------------------------
def filter_runs(
    runs: pd.DataFrame,
    *,
    budget: int | None = None,
    datasets: Sequence[str] = (),
    models: Sequence[str] = (),
    ttas: Sequence[str] = (),
) -> pd.DataFrame:
    """Keep runs on one of ``datasets``, of a model matching a shell pattern, evaluated with a TTA
    policy matching a shell pattern (a run's rows are one per evaluation: ``multicrop18*`` keeps
    ``multicrop18`` and ``multicrop18(weight=0.75)``, ``none`` the plain ones), and (when ``budget``
    is given) with fewer parameters than it. A board does not filter by budget: it judges (see
    :func:`judge_budget`)."""
    if runs.empty:
        return runs
    keep = pd.Series(True, index=runs.index)
    if budget is not None:
        keep &= runs["params"] < budget
    if datasets:
        keep &= runs["dataset"].isin(list(datasets))
    if models:
        names = runs["model"].astype(str).str.lower()
        keep &= names.map(lambda n: any(fnmatch.fnmatchcase(n, p.lower()) for p in models))
    if ttas:
        keys = runs["tta"].astype(str)
        keep &= keys.map(lambda k: any(fnmatch.fnmatchcase(k, p) for p in ttas))
    return runs[keep].reset_index(drop=True)


def judge_budget(runs: pd.DataFrame, budget: int, compute_budget: int | None = None) -> pd.DataFrame:
    """``within_budget``: fewer trainable parameters than the *board's* budget, whatever budget
    (and ``--allow-over-budget``) the run was trained with; and, with a ``compute_budget``, at most
    that many training MACs (a run that recorded none is not within it)."""
    if runs.empty:
        return runs
    within = runs["params"].astype(float) < budget
    out = runs.assign(within_budget=within, board_budget=budget, within_compute=True)
    if compute_budget is not None:
        train = pd.to_numeric(runs["train_macs"], errors="coerce")
        out = out.assign(
            within_compute=train.le(compute_budget).fillna(False), board_compute_budget=compute_budget
        )
    return out


def judge_seeds(runs: pd.DataFrame, min_seeds: int) -> pd.DataFrame:
    """``enough_seeds``: the run's configuration (row: a run and its TTA policy) has at least
    ``min_seeds`` runs that would be ranked otherwise (finished, within the board's budgets, with a
    test accuracy). Judge the budgets first (:func:`judge_budget`). ``min_seeds=1`` keeps every run."""
    if runs.empty:
        return runs
    runs = runs.drop(columns=["enough_seeds"], errors="ignore")
    counted = runs[ranked_mask(runs)].groupby("config_id", dropna=False)["run_id"].nunique()
    seeds = runs["config_id"].map(counted).fillna(0).astype("int64")
    return runs.assign(enough_seeds=seeds.ge(min_seeds), config_seeds=seeds, board_min_seeds=min_seeds)


# --- the board: load -> filter -> judge -> rank, shared by the leaderboard command and the report -
@dataclass
class Board:
    """The runs read (after filters), their ranking, the runs left out, and the files skipped."""

    runs: pd.DataFrame
    ranking: pd.DataFrame
    not_ranked: pd.DataFrame
    warnings: list[str]
    n_read: int  # runs read before the filters
    budget: int = DEFAULT_BUDGET


def load_board(
    paths: Sequence[Path | str],
    *,
    budget: int | None = None,
    compute_budget: int | None = None,
    min_seeds: int = 1,
    datasets: Sequence[str] = (),
    models: Sequence[str] = (),
    ttas: Sequence[str] = (),
    sort: str | None = None,
    ascending: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Board:
    """Read every record under ``paths``, filter, judge against the board's ``budget`` (default 5M),
    its ``compute_budget`` and ``min_seeds`` (a configuration with fewer finished seeds is not
    ranked), rank; one-line errors when nothing is left.

    ``warn`` is called with each warning (a skipped file) as soon as it is known, so the warnings
    are shown even when nothing is left to rank.
    """
    budget = DEFAULT_BUDGET if budget is None else budget
    names = ", ".join(str(p) for p in paths)
    runs, warnings = load_results(paths)
    if warn is not None:
        for warning in warnings:
            warn(warning)
    if runs.empty:
        raise CifarBudgetError(f"no run results found in {names}")
    n_read = runs["run_id"].nunique()
    runs = filter_runs(runs, datasets=datasets, models=models, ttas=ttas)
    runs = judge_budget(runs, budget, compute_budget)
    if min_seeds > 1:
        runs = judge_seeds(runs, min_seeds)
    if runs.empty:
        raise CifarBudgetError("no runs match --dataset/--model/--tta")
    board = leaderboard(runs, sort=sort, ascending=ascending)
    return Board(runs, board, not_ranked(runs), warnings, n_read, budget)


# --- ranking -------------------------------------------------------------------------------------
def spec_keys(runs: pd.DataFrame) -> list[str]:
    """The configuration columns of ``runs``: every spec field but the seed, in reading order."""
    from cifarbudget.spec import spec_fields

    known = [k for k in SPEC_ORDER if k in runs.columns]
    extra = [
        f.name
        for f in spec_fields()
        if f.name not in SPEC_ORDER and f.name != "seed" and f.name in runs.columns
    ]
    return known + extra


def ranked_mask(runs: pd.DataFrame) -> pd.Series:
    """True for the runs a leaderboard ranks: finished, within the board's budgets, with a test
    accuracy, and (once :func:`judge_seeds` has run) in a configuration with enough such seeds."""
    ok = pd.Series(True, index=runs.index)
    for column in ("within_budget", "within_compute", "enough_seeds"):
        if column in runs.columns:
            ok &= runs[column].astype(bool)
    return (runs["status"] == FINISHED) & ok & runs["test_acc"].notna()


def _reason(row: pd.Series) -> str:
    if not bool(row.get("within_budget", True)):
        budget = row.get("board_budget", DEFAULT_BUDGET)
        return f"out of budget: {int(row['params']):,} parameters, budget {int(budget):,}"
    if not bool(row.get("within_compute", True)):
        from cifarbudget.budget import format_macs

        limit = format_macs(row["board_compute_budget"])
        if pd.isna(row.get("train_macs")):
            return f"no training compute recorded (compute budget {limit})"
        return f"over the compute budget: {format_macs(row['train_macs'])} training MACs, budget {limit}"
    status = row["status"]
    if status == DIVERGED:
        return "diverged" + (f": {row['error']}" if isinstance(row["error"], str) else "")
    if status == FAILED:
        return "failed" + (f": {row['error']}" if isinstance(row["error"], str) else "")
    if status == RUNNING:
        return f"running or killed: {row['epochs_done']} of {row['epochs']} epochs recorded"
    if status == FINISHED and pd.isna(row.get("test_acc")):
        return "finished without a test accuracy"
    if status == FINISHED and not bool(row.get("enough_seeds", True)):
        have, need = int(row["config_seeds"]), int(row["board_min_seeds"])
        return f"too few seeds: {have} of its configuration finished, --min-seeds {need}"
    return f"unknown status {status!r}"


NOT_RANKED_COLUMNS = (
    "run_id",
    "model",
    "dataset",
    "augs",
    "sched",
    "tta",
    "epochs",
    "seed",
    "status",
    "params",
    "reason",
    "path",
)


def not_ranked(runs: pd.DataFrame, budget: int | None = None) -> pd.DataFrame:
    """One row per run that is not ranked (diverged, failed, running, over the board's budget), with the reason."""
    if runs.empty:
        return pd.DataFrame(columns=list(NOT_RANKED_COLUMNS))
    if budget is not None or "within_budget" not in runs.columns:
        runs = judge_budget(runs, DEFAULT_BUDGET if budget is None else budget)
    rest = runs[~ranked_mask(runs)].drop_duplicates("run_id")
    out = rest.assign(reason=rest.apply(_reason, axis=1) if len(rest) else pd.Series(dtype=object))
    columns = [c for c in NOT_RANKED_COLUMNS if c in out.columns]
    return out[columns].sort_values(["model", "run_id"], kind="stable").reset_index(drop=True)


def _with_selection(runs: pd.DataFrame) -> pd.DataFrame:
    """``select_acc``: what a run is judged by. Validation accuracy (with the row's TTA policy when it
    has one); test accuracy only for runs without a validation split (``selected_on = "test"``)."""
    with_tta = runs["tta"].astype(str) != "none"
    val = pd.to_numeric(runs["val_acc"], errors="coerce")
    val_tta = pd.to_numeric(runs["val_acc_tta"], errors="coerce")
    test = pd.to_numeric(runs["test_acc"], errors="coerce")
    test_tta = pd.to_numeric(runs["test_acc_tta"], errors="coerce")
    on_val = val.where(~with_tta, val_tta)
    on_test = test.where(~with_tta, test_tta)
    has_val = on_val.notna()
    return runs.assign(
        select_acc=on_val.where(has_val, on_test), selected_on=has_val.map({True: "val", False: "test"})
    )


def _ci95(std: pd.Series, count: pd.Series) -> pd.Series:
    t = count.map(lambda n: t_quantile_975(int(n) - 1))
    return t * std / count.pow(0.5)


def leaderboard(
    runs: pd.DataFrame, *, sort: str | None = None, ascending: bool = False, budget: int | None = None
) -> pd.DataFrame:
    """One row per configuration of the ranked runs: seeds -> n, mean, sample std and 95% CI.

    Ranked within each dataset by ``select_acc_mean`` (validation accuracy; see the module
    docstring), or by ``sort``; ties by fewer ``params``. ``*_std`` is the sample standard deviation
    (ddof=1) and ``*_ci95`` the half-width of the Student t interval ``t_{0.975,n-1} * std /
    sqrt(n)``; both are NaN for a single seed. ``budget``: judge the runs against it first (when
    the caller has not; :func:`load_board` has).
    """
    if budget is not None or ("within_budget" not in runs.columns and not runs.empty):
        runs = judge_budget(runs, DEFAULT_BUDGET if budget is None else budget)
    keys = spec_keys(runs) if not runs.empty else list(SPEC_ORDER)
    measured = "measured_images_per_s" in runs.columns
    ranked = runs[ranked_mask(runs)] if not runs.empty else runs
    columns = _board_columns(keys, measured)
    if ranked.empty:
        return pd.DataFrame(columns=columns)
    ranked = _with_selection(ranked)
    metrics = [m for m, _ in MEAN_METRICS] + (["measured_images_per_s"] if measured else [])
    ranked = ranked.assign(**{m: pd.to_numeric(ranked[m], errors="coerce") for m in metrics})
    named: dict[str, tuple[str, Any]] = {k: (k, "first") for k in keys}
    named["n"] = ("run_id", "count")
    named.update(
        selected_on=("selected_on", "first"),
        params=("params", "first"),
        macs=("macs", "first"),
        inference_macs_tta=("inference_macs_tta", "max"),
        train_macs=("train_macs", "max"),
        ece_mean=("ece", "mean"),
        data_dir=("data_dir", "first"),
        train_config_id=("train_config_id", "first"),
    )
    for metric in metrics:
        named[f"{metric}_mean"] = (metric, "mean")
        named[f"__{metric}_std"] = (metric, "std")
        named[f"__{metric}_count"] = (metric, "count")
    grouped = ranked.groupby("config_id", sort=False, dropna=False)
    board = grouped.agg(**named).reset_index()
    board["seeds"] = grouped["seed"].agg(lambda s: ",".join(str(v) for v in sorted(s))).to_numpy()
    for metric, spread in MEAN_METRICS:
        if spread:
            std, count = board[f"__{metric}_std"], board[f"__{metric}_count"]
            board[f"{metric}_std"] = std
            board[f"{metric}_ci95"] = _ci95(std, count)
    board["inference_macs_tta"] = board["inference_macs_tta"].fillna(board["macs"])
    board = board.astype({"n": "int64", "params": "int64", "macs": "int64", "inference_macs_tta": "int64"})
    board["one_seed"] = board["n"] == 1
    board["rerun"] = [_rerun(ranked, row) for _, row in board.iterrows()]
    board = sort_board(
        board[[c for c in columns if c not in ("rank", "tied")]], sort=sort, ascending=ascending
    )
    return board


def _rerun(ranked: pd.DataFrame, row: pd.Series) -> str:
    """The command that reproduces a configuration's runs: a sweep over its seeds."""
    from cifarbudget.spec import command_line

    first = ranked[ranked["config_id"] == row["config_id"]].iloc[0]
    spec = json.loads(first["spec_json"]) if isinstance(first.get("spec_json"), str) else None
    if spec is None:
        return ""
    own = json.loads(first["tta_spec_json"]) if isinstance(first.get("tta_spec_json"), str) else None
    spec.update(own or {"tta": row["tta"], "tta_params": {}})
    # a ranked row is within the board's budget: judge the rerun against that budget (a sweep never
    # trains over budget, and neither the budget nor its override is part of the run's identity)
    spec.pop("allow_over_budget", None)
    board_budget = first.get("board_budget")
    if pd.api.types.is_number(board_budget) and not pd.isna(board_budget):
        spec["budget"] = max(int(spec.get("budget") or 0), int(board_budget))
    data_dir = row.get("data_dir") if spec.get("dataset") not in ("synthetic",) else None
    seeds = [int(s) for s in str(row["seeds"]).split(",")]
    return command_line(
        spec, sweep=True, seeds=seeds, data_dir=data_dir if isinstance(data_dir, str) else None
    )


def _board_columns(keys: list[str], measured: bool) -> list[str]:
    stats = [
        "n",
        "seeds",
        "one_seed",
        "selected_on",
        "select_acc_mean",
        "select_acc_std",
        "select_acc_ci95",
        "tied",
        "val_acc_mean",
        "val_acc_tta_mean",
        "test_acc_mean",
        "test_acc_std",
        "test_acc_ci95",
        "test_acc_tta_mean",
        "test_acc_tta_std",
        "test_acc_tta_ci95",
        "params",
        "macs",
        "inference_macs_tta",
        "train_macs",
        "ece_mean",
        "train_seconds_mean",
        "train_images_per_s_mean",
    ]
    if measured:
        stats.append("measured_images_per_s_mean")
    return ["rank", "config_id", *keys, *stats, "train_config_id", "rerun"]


def comparable_key(frame: pd.DataFrame) -> pd.Series:
    """What a row is ranked among: its dataset, and where that dataset's rows hold more than one
    data id (two image folders, or one whose images changed), its data too. Rows on different data
    have different test sets: their accuracies are not comparable. The key reads ``imagefolder``, or
    ``imagefolder (data 0a7d279b)`` (``data unknown`` for a record without a data id)."""
    if "dataset" not in frame.columns:
        return pd.Series("", index=frame.index, dtype=object)
    dataset = frame["dataset"].astype(str)
    if "data_id" not in frame.columns:
        return dataset
    data = frame["data_id"].map(lambda v: str(v)[:8] if isinstance(v, str) and v else "unknown")
    several = data.groupby(dataset).transform("nunique") > 1
    return dataset.where(~several, dataset + " (data " + data + ")")


def comparable_groups(frame: pd.DataFrame, *, sort: bool = True) -> list[tuple[str, pd.DataFrame]]:
    """``frame`` split by :func:`comparable_key`: the groups a ranking, a Pareto front or an
    ablation is computed within."""
    if frame.empty:
        return []
    key = comparable_key(frame)
    return [(str(label), part) for label, part in frame.groupby(key, sort=sort)]


def sort_board(board: pd.DataFrame, *, sort: str | None = None, ascending: bool = False) -> pd.DataFrame:
    """Order ``board`` within each dataset (and its data: :func:`comparable_key`) by ``sort``
    (default ``select_acc_mean``), number the rows of each group in ``rank`` and mark ``tied``
    against the group's reference row.

    Configurations selected on validation come first; those without a validation split (selected
    on test, a different measurement) follow, ranked among themselves, with ties judged among them.
    """
    board = board.drop(columns=["rank", "tied"], errors="ignore")
    column = sort or "select_acc_mean"
    if column not in board.columns:
        raise CifarBudgetError(f"cannot sort by {column!r}; columns: {', '.join(board.columns)}")
    by = [column] + [c for c in ("select_acc_mean", "params") if c != column]
    order = [ascending] + [c == "params" for c in by[1:]]
    if "selected_on" in board.columns:
        board = board.assign(_on_test=board["selected_on"] == "test")
        by, order = ["_on_test", *by], [True, *order]
    parts = []
    for _, part in comparable_groups(board):
        part = part.sort_values(by, ascending=order, na_position="last", kind="stable").reset_index(drop=True)
        part.insert(0, "rank", pd.RangeIndex(1, len(part) + 1).to_numpy(dtype="int64"))
        groups = part.groupby("_on_test", sort=False) if "_on_test" in part.columns else [(None, part)]
        part["tied"] = pd.concat([welch_ties(g.reset_index(drop=True)).set_axis(g.index) for _, g in groups])
        part["tied"] = part["tied"].astype("str")
        parts.append(part)
    out = pd.concat(parts, ignore_index=True) if parts else board.assign(rank=pd.Series(dtype="int64"))
    columns = ["rank", *[c for c in board.columns if c not in ("tied", "_on_test")]]
    tied_at = columns.index("select_acc_ci95") + 1 if "select_acc_ci95" in columns else len(columns)
    columns.insert(tied_at, "tied")
    return out[columns]


def welch_ties(part: pd.DataFrame) -> pd.Series:
    """Per row of one dataset's ranking: ``"best"`` for the reference, the row with the highest mean
    selection accuracy among those with at least two seeds, whatever order the rows are in (a
    single seed has no spread, so a one-seed row is the reference only when no row has two);
    ``"tied"`` when Welch's two-sided t-test at 5% does not reject an equal mean selection
    accuracy with the reference, ``""`` when it does; ``"n=1"`` when the row or the reference has a
    single seed (untestable). A one-seed row can rank above the reference: its ``n=1`` says so."""
    if part.empty:
        return pd.Series(dtype=object)
    means = part["select_acc_mean"].astype(float).reset_index(drop=True)
    seeded = means[(part["n"] >= 2).to_numpy()]
    candidates = seeded if len(seeded) else means
    # the first of the highest (idxmax), so that the default ranking's reference is its first such row
    ref = int(candidates.idxmax()) if candidates.notna().any() else 0
    best = part.iloc[ref]
    out = []
    for k, (_, row) in enumerate(part.iterrows()):
        if k == ref:
            out.append("best")
        elif row["n"] < 2 or best["n"] < 2:
            out.append("n=1")
        else:
            out.append("tied" if _welch_same(best, row) else "")
    return pd.Series(out, index=part.index, dtype=object)


def _welch_same(a: pd.Series, b: pd.Series) -> bool:
    m1, m2 = float(a["select_acc_mean"]), float(b["select_acc_mean"])
    v1 = float(a["select_acc_std"]) ** 2 / int(a["n"])
    v2 = float(b["select_acc_std"]) ** 2 / int(b["n"])
    if v1 + v2 == 0:
        return m1 == m2
    t = abs(m1 - m2) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / ((v1**2) / (int(a["n"]) - 1) + (v2**2) / (int(b["n"]) - 1))
    return t < t_quantile_975(max(1, math.floor(df)))  # floor: the conservative (larger) critical value


# --- Pareto fronts and ablations -----------------------------------------------------------------
def pareto(board: pd.DataFrame, by: str = "params", metric: str = "select_acc_mean") -> pd.DataFrame:
    """The non-dominated rows of ``board``, per dataset and data (:func:`comparable_key`): no other
    row of the same group is at least as accurate and as cheap, and strictly better in one of the two. ``by`` is ``params``,
    ``macs`` or ``inference-macs`` (MACs x the TTA views actually computed); rows keep their order.
    """
    if by not in PARETO_COSTS:
        raise CifarBudgetError(f"--pareto must be one of {', '.join(PARETO_COSTS)} (got {by!r})")
    if board.empty:
        return board
    cost_column = PARETO_COSTS[by]
    keep: list[Any] = []
    for _, part in comparable_groups(board, sort=False):
        valid = part[part[metric].notna()]
        order = valid.sort_values([cost_column, metric], ascending=[True, False], kind="stable")
        best = -math.inf
        for _, group in order.groupby(cost_column, sort=True):
            top = group[metric].max()
            if top > best:
                keep.extend(group.index[group[metric] == top])
                best = top
    return board.loc[sorted(keep)]


ABLATION_COLUMNS = (
    "dataset",
    "factor",
    "level",
    "metric",
    "combos_with",
    "combos_without",
    "runs_with",
    "runs_without",
    "mean_with",
    "mean_without",
    "delta",
)


def ablation(board: pd.DataFrame, metric: str = "val") -> pd.DataFrame:
    """Marginal effect of each augmentation, scheduler and TTA policy on the ranked configurations,
    per dataset, on validation accuracy (``metric="val"``, the default: what a choice may be based
    on) or on test accuracy (``metric="test"``, to report).

    ``aug``: configurations whose pipeline contains the augmentation vs. those whose pipeline does
    not. ``sched``: configurations with the scheduler vs. those with any other. Each side is the
    plain mean of the configurations' mean accuracy (every configuration counts once, whatever
    its number of seeds), i.e. averaged over the other factors as they occur in the grid.
    ``tta``: paired, on the same configurations: the accuracy with the policy vs. the same models
    evaluated without TTA. ``delta = mean_with - mean_without``. Configurations without a
    validation split count only for ``metric="test"``.
    """
    if metric not in ("val", "test"):
        raise CifarBudgetError(f"ablation metric must be 'val' or 'test' (got {metric!r})")
    rows: list[dict[str, Any]] = []
    if board.empty:
        return pd.DataFrame(columns=list(ABLATION_COLUMNS))
    for dataset, part in comparable_groups(board):
        # augmentations and schedules change training: compare the trained configurations once each
        # (a configuration evaluated with several TTA policies is one training), without TTA, on the
        # row of the training that covers the most seeds (a policy may have evaluated only some)
        trained = part
        if "train_config_id" in part.columns:
            trained = part.sort_values("n", ascending=False, kind="stable").drop_duplicates("train_config_id")
        plain, n = trained[f"{metric}_acc_mean"], trained["n"]

        def side(mask: pd.Series, values: pd.Series, n: pd.Series) -> tuple[int, int, float]:
            mask = mask & values.notna()
            return int(mask.sum()), int(n[mask].sum()), float(values[mask].mean()) if mask.any() else math.nan

        pipelines = trained["augs"].astype(str).str.split("+").map(lambda p: set(p) - {"none", ""})
        for aug in sorted(set().union(*pipelines)):
            has = pipelines.map(lambda p, a=aug: a in p).astype(bool)
            rows.append(_ablation_row(dataset, "aug", aug, metric, side(has, plain, n), side(~has, plain, n)))
        for sched in sorted(trained["sched"].astype(str).unique()):
            has = trained["sched"].astype(str) == sched
            rows.append(
                _ablation_row(dataset, "sched", sched, metric, side(has, plain, n), side(~has, plain, n))
            )
        with_tta, without_tta = part[f"{metric}_acc_tta_mean"], part[f"{metric}_acc_mean"]
        for policy in sorted(part["tta"].astype(str).unique()):
            if policy == "none":
                continue
            has = (part["tta"].astype(str) == policy) & with_tta.notna()
            rows.append(
                _ablation_row(
                    dataset,
                    "tta",
                    policy,
                    metric,
                    side(has, with_tta, part["n"]),
                    side(has, without_tta, part["n"]),
                )
            )
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))


def _ablation_row(
    dataset: Any,
    factor: str,
    level: str,
    metric: str,
    with_: tuple[int, int, float],
    without: tuple[int, int, float],
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "factor": factor,
        "level": level,
        "metric": metric,
        "combos_with": with_[0],
        "combos_without": without[0],
        "runs_with": with_[1],
        "runs_without": without[1],
        "mean_with": with_[2],
        "mean_without": without[2],
        "delta": with_[2] - without[2],
    }


# --- output formats ------------------------------------------------------------------------------
def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as strings for people: 4-decimal accuracies, grouped counts, blanks for NaN.

    In a leaderboard, the spec columns beyond model, dataset, augs, sched, tta and epochs are
    dropped when every row has the same value, and so are columns with no value at all, the
    rerun commands and the data folders (markdown and html only; csv and json keep every column).
    """
    from cifarbudget.budget import format_count, format_macs

    hidden = ("rerun", "data_dir", "one_seed", "train_config_id")
    out = frame.drop(columns=[c for c in hidden if c in frame.columns])
    if "config_id" in out.columns and len(out) > 1:
        varying = varying_spec_columns(out)
        out = out.drop(
            columns=[c for c in SPEC_ORDER if c in out.columns and c not in CORE_KEYS + tuple(varying)]
        )
    elif "config_id" in out.columns:
        out = out.drop(columns=[c for c in SPEC_ORDER if c in out.columns and c not in CORE_KEYS])
    if "config_id" in out.columns and len(out):  # e.g. the TTA columns when no configuration uses TTA
        out = out.drop(columns=[c for c in out.columns if out[c].isna().all()])
    for column in out.columns:
        values = frame[column]
        if column in ("macs", "inference_macs_tta"):
            out[column] = values.map(lambda v: "" if pd.isna(v) else format_count(v))
        elif column in ("train_macs", "compute_budget"):  # training-sized: 25.8T
            out[column] = values.map(lambda v: "" if pd.isna(v) or not v else format_macs(v))
        elif column == "params":
            out[column] = values.map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
        elif "acc" in column or column in ("mean_with", "mean_without", "delta", "ece_mean"):
            out[column] = values.map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
        elif column.endswith("_seconds_mean"):
            out[column] = values.map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
        elif column.endswith("images_per_s_mean"):
            out[column] = values.map(lambda v: "" if pd.isna(v) else f"{v:.0f}")
        elif pd.api.types.is_float_dtype(values):
            out[column] = values.map(lambda v: "" if pd.isna(v) else f"{v:g}")
        else:
            out[column] = values.map(
                lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
            )
    return out


def frame_to_json(frame: pd.DataFrame) -> str:
    """JSON with pandas' table schema (``pd.read_json(..., orient="table")`` reads it) and exact floats.

    :func:`read_leaderboard_json` reads it back into an identical frame (dtypes and every bit of
    every float); NaN is written as ``null``.
    """
    from pandas.io.json import build_table_schema

    schema = build_table_schema(frame, index=False, version=True)
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
        for record in frame.to_dict(orient="records")
    ]
    payload = {"schema": schema, "data": records}
    return json.dumps(payload, separators=(",", ":"), default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_DTYPES = {"integer": "int64", "number": "float64", "boolean": "bool", "string": "object"}


def read_leaderboard_json(source: str | Path) -> pd.DataFrame:
    """Read what :func:`frame_to_json` wrote (a path, or the JSON text) back into the same frame."""
    if isinstance(source, Path) or not str(source).lstrip().startswith("{"):
        source = Path(source).read_text()
    try:
        payload = json.loads(source)
        fields = [f for f in payload["schema"]["fields"] if f["name"] != "index"]
        data = payload["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CifarBudgetError(f"not a cifarbudget leaderboard JSON: {exc}") from None
    columns: dict[str, pd.Series] = {}
    for field in fields:
        name = field["name"]
        dtype = field.get("extDtype") or _DTYPES.get(field["type"], "object")
        values = [record.get(name) for record in data]
        if dtype == "float64":
            values = [math.nan if v is None else v for v in values]
        columns[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(columns)


def format_frame(frame: pd.DataFrame, fmt: str = "markdown") -> str:
    """``frame`` as markdown (default), csv, html (a ``<table>``) or json (see :func:`frame_to_json`)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame_to_json(frame)
    if fmt == "html":
        return (
            display_frame(frame).to_html(index=False, escape=True, na_rep="", classes="leaderboard", border=0)
            + "\n"
        )
    if fmt == "markdown":
        if frame.empty:
            return "(no rows)\n"
        shown = display_frame(frame)
        align = ["right" if _numeric(frame[c]) else "left" for c in shown.columns]  # numbers line up
        return shown.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"
    raise CifarBudgetError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _numeric(values: pd.Series) -> bool:
    """A column of numbers (not of flags): right-aligned in markdown."""
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def varying_spec_columns(frame: pd.DataFrame) -> list[str]:
    """The spec columns beyond :data:`CORE_KEYS` whose value differs between rows of ``frame``:
    what tells its configurations apart besides model, dataset, augs, sched, tta and epochs."""
    return [
        c
        for c in SPEC_ORDER
        if c in frame.columns and c not in CORE_KEYS and frame[c].astype(str).nunique(dropna=False) > 1
    ]


def _leaves(value: Any) -> dict[str, Any] | None:
    """A parameter cell (a JSON object) flattened to dotted keys: ``{"crop-flip": {"padding": 2}}``
    is ``{"crop-flip.padding": 2}``; None when the cell is not a JSON object."""
    if not isinstance(value, str) or not value.startswith("{"):
        return None
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    out: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, item in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, dict) and item:
                walk(dotted, item)
            else:
                out[dotted] = item

    walk("", obj)
    return out


def varying_fields(frame: pd.DataFrame) -> list[tuple[str, str | None]]:
    """What tells the rows of ``frame`` apart beyond :data:`CORE_KEYS`, as ``(column, leaf)``: a
    spec column whose value differs as ``(column, None)``; a parameter column (``aug_params``,
    ``opt_params``, ...) by the parameters that differ, ``("aug_params", "crop-flip.padding")``
    (a parameter one row sets and another leaves at its default differs too)."""
    fields: list[tuple[str, str | None]] = []
    for column in varying_spec_columns(frame):
        parsed = [_leaves(v) for v in frame[column]]
        if any(p is None for p in parsed):
            fields.append((column, None))
            continue
        keys = sorted({key for p in parsed if p is not None for key in p})
        for key in keys:
            values = {json.dumps(p.get(key) if p is not None else None, sort_keys=True) for p in parsed}
            if len(values) > 1:
                fields.append((column, key))
    return fields


def describe_config(row: pd.Series | dict[str, Any], among: pd.DataFrame | None = None) -> str:
    """``resnet20 | crop-flip+cutout | cosine | tta flip | 30 ep``: a short label for plots.

    With ``among`` (the rows drawn or compared together), what varies among them follows
    (:func:`varying_fields`): ``| lr=0.4 aug.crop-flip.padding=2 opt.muon_lr=0.02``, so that two
    configurations differing only in, say, their learning rate or one augmentation parameter get
    different labels. A parameter this row leaves at its default is not named."""
    tta = f" | tta {row['tta']}" if str(row.get("tta", "none")) != "none" else ""
    label = f"{row['model']} | {row['augs']} | {row['sched']}{tta} | {row['epochs']} ep"
    if among is None:
        return label
    extra = []
    for column, leaf in varying_fields(among):
        if leaf is None:
            extra.append(f"{column}={_label_value(row.get(column))}")
            continue
        leaves = _leaves(row.get(column)) or {}
        if leaf in leaves:
            extra.append(f"{column.removesuffix('_params')}.{leaf}={_label_value(leaves[leaf])}")
    return label + (" | " + " ".join(extra) if extra else "")


def _label_value(value: Any) -> str:
    """A value in a label: floats as ``%g``, lists and objects as compact JSON without quotes,
    none as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):  # as the options and sweep files spell it
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(",", ":"))
    return str(value).replace('"', "").replace(" ", "")

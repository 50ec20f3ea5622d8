"""Hyperparameter search with Optuna over seed-averaged, recorded runs: the body of ``cifarbudget tune``.

This module owns the search-space file, the study (storage, sampler, pruner, continuation and
stale trials) and the objective. The search itself is Optuna's (Akiba et al., "Optuna: A
Next-generation Hyperparameter Optimization Framework", KDD 2019): the default sampler is TPE
(Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011) and pruning is the
median stopping rule (Golovin et al., "Google Vizier: A Service for Black-Box Optimization",
KDD 2017), Optuna's ``MedianPruner`` applied within each seed's steps (:func:`seed_median_pruner`).

A **trial** draws one value per ``[params]`` entry of the space file, adds the ``[fixed]``
fields, and trains seeds ``0..N-1`` of that configuration as ordinary recorded runs
(:func:`cifarbudget.runner.run_spec`, in the results folder, so ``leaderboard`` and ``report``
see them). Run ids are deterministic, so a run that already finished is never trained again
(a repeated configuration costs nothing) and an unfinished one resumes from its checkpoint.
The **objective** is the mean validation accuracy (``final.val_acc``) over the seeds: Optuna
maximises it. Seed averaging is what Optuna does not offer by itself.

**Pruning.** After every epoch of seed ``k`` the trial reports, at step ``1000 * k + epoch``, the
mean validation accuracy at that epoch over seeds ``0..k``; a completed trial therefore has one
curve per seed prefix, and the median rule compares like with like: the trial's best epoch so far
of seed ``k`` against the other trials' median at seed ``k``, epoch ``e``.
The report happens after each seed from the run's recorded history; when the runner accepts
callback objects (``RunSettings.callbacks``) it happens live after each epoch, and a pruned
trial stops mid-run (its run is left unfinished, with its checkpoint). A trial whose model is
over the parameter budget is pruned before anything trains; a trial with a diverged run is
pruned too.

**Study.** Stored in SQLite in the results folder by default
(``sqlite:///<results_dir>/tune-<study>.db``) or in any Optuna RDB storage URL; ``--trials T``
is the number of finished (complete or pruned) trials the study should have, so rerunning the
same command continues an interrupted study and a larger ``T`` searches further. The space,
the fixed fields and the seed count are stored with the study: continuing it with another setup
is refused. A trial left RUNNING by a process that died on this machine (SIGKILL, power loss) is
marked FAIL when the next ``tune`` starts and its parameters are queued again, so its runs
resume from their checkpoints; Ctrl-C queues the interrupted trial's parameters the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import difflib
import json
import logging
import math
import os
import shlex
import signal
import socket
import statistics
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarbudget.errors import CifarBudgetError, OverBudgetError, RunError, describe
from cifarbudget.spec import RunSpec, SpecField, coerce, field_for_key, parse_pipeline, resolve_spec

log = logging.getLogger(__name__)

SEED_STEP = 1000  # the pruning step of seed k, epoch e is SEED_STEP * k + e
PARAM_TYPES = ("float", "int", "categorical")
TOP_LEVEL = ("params", "fixed")
_TYPE_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
SETUP_ATTR = "cifarbudget.setup"
WORKER_ATTR = "worker"
OBJECTIVE = "mean val_acc over seeds 0..N-1"
EXTRA_HINT = "pip install 'cifarbudget[tune]'"


class TuneError(CifarBudgetError):
    """A search space or tune option is invalid (unknown key, bad range, incompatible study)."""


def require_optuna() -> Any:
    """Import optuna or raise a one-line error naming the ``[tune]`` extra."""
    try:
        import optuna
    except ImportError:
        raise TuneError(f"cifarbudget tune needs the optuna package: {EXTRA_HINT}") from None
    return optuna


# --- the search space -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched value: a RunSpec field (or one key of a component's parameters) and its distribution.

    ``name`` is the parameter's name in the study: the field name (``lr``, ``weight_decay``), or
    ``<field>.<aug>.<key>`` / ``<field>.<key>`` for a component parameter (``aug_params.cutmix.p``).
    """

    name: str
    field: str
    path: tuple[str, ...] = ()
    kind: str = "float"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value for ``trial`` (an ``optuna.Trial``)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))

    def probes(self) -> list[Any]:
        """The values checked before the study starts: both ends of a range, every choice."""
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"type": self.kind, "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass
class TuneSpace:
    """A search space file: the searched parameters, and the fields and settings every run shares.

    ``shared`` is a :class:`cifarbudget.sweep.Sweep` with an empty grid: its ``fixed`` fields and
    its settings (``results_dir``, ``data_dir``, ``device``, ...) are read and checked exactly as
    a sweep file's ``[fixed]`` table.
    """

    params: list[Param]
    shared: Any  # cifarbudget.sweep.Sweep
    source: str = "the search space"
    data_ids: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # dataset -> data_id

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]


def _toml(path: Path) -> dict[str, Any]:
    from cifarbudget.io import read_toml

    return read_toml(path, TuneError)


def _suggest(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else f" Known keys: {', '.join(sorted(known))}."


def load_space(path: str | Path) -> TuneSpace:
    """Read a search-space file: ``[params]`` (one distribution per key) and ``[fixed]`` (as a sweep's)."""
    path = Path(path).expanduser()
    data = _toml(path)
    for key in data:
        if key not in TOP_LEVEL:
            raise TuneError(f"unknown key {key!r} in {path}.{_suggest(key, TOP_LEVEL)}")
    params, fixed = data.get("params", {}), data.get("fixed", {})
    if not isinstance(params, dict) or not isinstance(fixed, dict):
        raise TuneError(f"{path}: [params] and [fixed] must be tables")
    return space_from_tables(params, fixed, source=str(path))


def space_from_tables(
    params: Mapping[str, Any], fixed: Mapping[str, Any] | None = None, *, source: str = "the search space"
) -> TuneSpace:
    """A :class:`TuneSpace` from a ``[params]`` and a ``[fixed]`` table (already parsed)."""
    from cifarbudget.sweep.grid import SETTINGS, Sweep

    if not params:
        raise TuneError(f"{source}: [params] is empty: give at least one parameter to search")
    parsed = [parse_param(key, value, where=f"[params] of {source}") for key, value in params.items()]
    names = [p.name for p in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TuneError(f"{source}: {', '.join(duplicates)} is searched twice in [params] (two spellings?)")
    fixed = dict(fixed or {})
    settings = {k.replace("-", "_"): fixed.pop(k) for k in list(fixed) if k.replace("-", "_") in SETTINGS}
    _refuse_fixed(fixed, f"[fixed] of {source}")
    try:
        shared = Sweep().with_overrides({}, fixed, **settings)
    except CifarBudgetError as exc:
        raise TuneError(f"{source}: {exc}") from None
    space = TuneSpace(parsed, shared, source)
    _check_overlap(space, shared.fixed, "[fixed]")
    return space


_NOT_FIXED = {
    "seed": "seeds come from --seeds (--seeds N trains seeds 0..N-1 of every trial)",
    "allow_over_budget": "tune never trains over budget (trials over the budget are pruned)",
}


def _refuse_fixed(fixed: Mapping[str, Any], where: str) -> None:
    """``seed`` and ``allow_over_budget`` cannot be fixed: a trial's runs would silently ignore them."""
    for raw in fixed:
        try:
            name = field_for_key(raw, where=where).name
        except RunError:
            continue  # an unknown key: the sweep's check names it, with suggestions
        if name in _NOT_FIXED:
            raise TuneError(f"{raw!r} cannot be set in {where}: {_NOT_FIXED[name]}")


def _field(raw: str, where: str) -> tuple[SpecField, tuple[str, ...]]:
    """The RunSpec field a [params] key names, and the path inside it for a component parameter."""
    head, dot, rest = str(raw).partition(".")
    try:
        spec_field = field_for_key(head if dot else raw, where=where)
    except RunError as exc:
        raise TuneError(str(exc)) from None
    if spec_field.kind is not dict:
        if dot:
            raise TuneError(f"{raw!r} in {where}: {spec_field.name} has no parts to name after a dot")
        return spec_field, ()
    path = tuple(rest.split(".")) if dot else ()
    wanted = 2 if spec_field.name == "aug_params" else 1
    if len(path) != wanted or not all(path):
        example = "aug_params.cutmix.p" if wanted == 2 else f"{spec_field.name}.KEY"
        raise TuneError(f"{raw!r} in {where}: search one parameter of a component, e.g. {example!r}")
    return spec_field, path


def parse_param(raw: str, value: Any, *, where: str = "[params]") -> Param:
    """One ``[params]`` entry: ``{type="float", low=, high=, log=, step=}``, ``{type="int", ...}``,
    ``{type="categorical", choices=[...]}``, or a bare list (categorical)."""
    spec_field, path = _field(raw, where)
    from cifarbudget.identity import NOT_TRAINING

    if spec_field.name in ("seed", "allow_over_budget", "val_size", "dataset", *NOT_TRAINING):
        one_split = (
            "the objective must be measured on one validation split, so every trial is compared on "
            "the same images; give it in [fixed] or as an option"
        )
        why = {
            "seed": "seeds come from --seeds",
            "allow_over_budget": "tune never trains over budget",
            "val_size": one_split,
            "dataset": one_split,
        }.get(
            spec_field.name,
            "it does not change training, so every value would train the same runs and score the "
            "same validation accuracy (the objective has no TTA); give it in [fixed] or as an option",
        )
        raise TuneError(f"{raw!r} cannot be searched: {why}")
    name = ".".join((spec_field.name, *path))
    if isinstance(value, list):
        value = {"type": "categorical", "choices": value}
    if not isinstance(value, dict):
        raise TuneError(
            f'{raw!r} in {where}: expected a table such as {{type="float", low=0.01, high=0.5, log=true}} '
            f"or a list of choices, got {value!r}"
        )
    kind = value.get("type")
    if kind not in PARAM_TYPES:
        hint = _suggest(str(kind), PARAM_TYPES) if isinstance(kind, str) else ""
        raise TuneError(
            f"{raw!r} in {where}: type must be one of {', '.join(PARAM_TYPES)} (got {kind!r}).{hint}".rstrip(
                "."
            )
        )
    for key in value:
        if key not in _TYPE_KEYS[kind]:
            raise TuneError(f"unknown key {key!r} for {raw!r} in {where}.{_suggest(key, _TYPE_KEYS[kind])}")
    field_kind = spec_field.kind if not path else None
    if kind == "categorical":
        return Param(name, spec_field.name, path, kind, choices=_choices(raw, value, spec_field, path, where))
    if field_kind not in (None, int, float):
        raise TuneError(f'{raw!r} in {where}: {spec_field.name} is not a number; use type="categorical"')
    if kind == "float" and field_kind is int:
        raise TuneError(f'{raw!r} in {where}: {spec_field.name} is an integer; use type="int"')
    return _range_param(raw, name, spec_field.name, path, kind, value, where)


def _range_param(
    raw: str, name: str, field_name: str, path: tuple[str, ...], kind: str, value: dict[str, Any], where: str
) -> Param:
    number = int if kind == "int" else (int, float)
    bounds = {}
    for key in ("low", "high"):
        if key not in value:
            raise TuneError(f"{raw!r} in {where}: type={kind!r} needs low and high")
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, number):
            raise TuneError(
                f"{raw!r} in {where}: {key} must be {'an integer' if kind == 'int' else 'a number'}"
            )
        if not math.isfinite(v):
            raise TuneError(f"{raw!r} in {where}: {key} must be a finite number (got {v})")
        bounds[key] = float(v) if kind == "float" else int(v)
    low, high = bounds["low"], bounds["high"]
    log_scale = value.get("log", False)
    if not isinstance(log_scale, bool):
        raise TuneError(f"{raw!r} in {where}: log must be true or false")
    step = value.get("step")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, number) or not math.isfinite(step) or step <= 0
    ):
        raise TuneError(
            f"{raw!r} in {where}: step must be a positive {'integer' if kind == 'int' else 'number'}"
        )
    if low > high:
        raise TuneError(f"{raw!r} in {where}: low {low:g} is above high {high:g}")
    if step is not None:
        _check_step(raw, where, low, high, step)
    if log_scale and low <= 0:
        raise TuneError(f"{raw!r} in {where}: a log scale needs low > 0 (got {low:g})")
    if log_scale and step is not None and (kind == "float" or step != 1):  # Optuna's rule
        raise TuneError(f"{raw!r} in {where}: give log or step, not both")
    return Param(name, field_name, path, kind, low, high, log_scale, step)


def _check_step(raw: str, where: str, low: float, high: float, step: float) -> None:
    """``step`` must divide ``high - low`` (Optuna's decimal test): Optuna would otherwise lower
    ``high`` with a warning of its own, and the values the user named would never be drawn."""
    d_low, d_high, d_step = (decimal.Decimal(str(v)) for v in (low, high, step))
    if (d_high - d_low) % d_step == 0:
        return
    last = (d_high - d_low) // d_step * d_step + d_low
    raise TuneError(
        f"{raw!r} in {where}: step {step} does not divide high - low ({high} - {low}); "
        f"the highest value it reaches is {last.normalize():f}: give high = {last.normalize():f}, or another step"
    )


def _choices(
    raw: str, value: dict[str, Any], spec_field: SpecField, path: tuple[str, ...], where: str
) -> tuple[Any, ...]:
    choices = value.get("choices")
    if not isinstance(choices, list) or not choices:
        raise TuneError(f'{raw!r} in {where}: type="categorical" needs a non-empty list of choices')
    out: list[Any] = []
    for choice in choices:
        if spec_field.kind is tuple and not path:  # one pipeline per choice, stored as "a+b"
            try:
                choice = "+".join(parse_pipeline(choice)) or "none"
            except RunError as exc:
                raise TuneError(f"{raw!r} in {where}: {exc}") from None
        elif not path:
            try:
                coerce(spec_field.name, choice)
            except (RunError, CifarBudgetError) as exc:
                raise TuneError(f"{raw!r} in {where}: {exc}") from None
        if choice is not None and not isinstance(choice, (bool, int, float, str)):
            raise TuneError(
                f"{raw!r} in {where}: a choice must be a number, text or true/false, got {choice!r}"
            )
        out.append(choice)
    if len(set(map(json.dumps, out))) != len(out):
        raise TuneError(f"{raw!r} in {where}: the same choice is listed twice ({out})")
    return tuple(out)


def _check_overlap(space: TuneSpace, fixed: Mapping[str, Any], where: str) -> None:
    """A field both searched and fixed is ambiguous: refuse it."""
    for p in space.params:
        if p.field in fixed and (not p.path or _dig(fixed[p.field], p.path) is not None):
            flag = "--" + p.field.replace("_", "-")
            shown = where if where != "options" else f"the command line ({flag})"
            raise TuneError(
                f"{p.name} is both searched ([params] of {space.source}) and fixed in {shown}; keep one"
            )


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


# --- one trial's runs ----------------------------------------------------------------------------
def trial_options(space: TuneSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """The RunSpec options of one trial: the fixed fields with the drawn values put in."""
    options = json.loads(json.dumps(space.shared.fixed, default=list))  # a deep copy, tuples as lists
    for p in space.params:
        if p.name not in values:  # a conditional parameter this trial does not use
            continue
        value = values[p.name]
        if not p.path:
            options[p.field] = value
            continue
        table = options.setdefault(p.field, {})
        for key in p.path[:-1]:
            table = table.setdefault(key, {})
        table[p.path[-1]] = value
    return options


def trial_spec(space: TuneSpace, values: Mapping[str, Any], seed: int = 0) -> RunSpec:
    """The checked RunSpec of one trial and seed (component parameters of unused augmentations dropped)."""
    options = trial_options(space, values)
    options["seed"] = seed
    key = str(options.get("dataset", ""))  # the data are fingerprinted once per dataset, not per trial
    if key in space.data_ids:
        options["data_id"] = space.data_ids[key]
    spec = resolve_spec(recipe=space.shared.recipe, data_dir=space.shared.data_dir, **options)
    space.data_ids.setdefault(key, spec.data_id)
    if set(spec.aug_params) - set(spec.augs):
        spec = dataclasses.replace(
            spec, aug_params={k: v for k, v in spec.aug_params.items() if k in spec.augs}
        )
    return spec


def suggest_values(space: TuneSpace, trial: Any) -> dict[str, Any]:
    """Draw a trial's values: every parameter, except an augmentation's parameter
    (``aug_params.<aug>.<key>``) when the trial's pipeline does not have that augmentation (a
    conditional parameter, so the sampler never learns from values that changed nothing)."""
    values = {p.name: p.suggest(trial) for p in space.params if p.field != "aug_params"}
    conditional = [p for p in space.params if p.field == "aug_params"]
    if conditional:
        augs = trial_spec(space, values).augs
        values.update({p.name: p.suggest(trial) for p in conditional if p.path[0] in augs})
    return values


def check_space(space: TuneSpace) -> RunSpec:
    """Check every value the space can produce before the study starts; returns the first trial's spec.

    Every parameter's probe values (both ends of a range, every choice) are resolved into a spec
    with the other parameters at their first probe and checked as a run checks them before its
    data load (parameter names and values, the components, the model against the budget, the
    schedule), so a bad name, a bad range end, a bad fixed setting or a validation split of 0 is a
    one-line error before the study is created, not a failed trial on every attempt. A probe
    over the parameter or compute budget is fine: such a trial is pruned.
    """
    from cifarbudget.data.core import default_data_dir
    from cifarbudget.runner import (
        check_component_params,
        check_spec_budget,
        check_tracker_names,
        validate_components,
    )

    has_model = any(p.field == "model" for p in space.params) or "model" in space.shared.fixed
    if not has_model and space.shared.recipe is None:
        raise TuneError(
            f"no model: set model in [fixed] or [params] of {space.source}, or pass --model or --recipe"
        )
    check_tracker_names(space.shared.track)  # an unknown tracker would fail every trial
    root = Path(space.shared.data_dir).expanduser() if space.shared.data_dir else default_data_dir()
    first = {p.name: p.probes()[0] for p in space.params}
    probes: list[tuple[dict[str, Any], str]] = [({}, "")] + [
        ({p.name: probe}, f"{p.name} = {probe!r}: ") for p in space.params for probe in p.probes()[1:]
    ]
    specs, seen = [], set()
    for change, where in probes:
        values = {**first, **change}
        key = json.dumps(values, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            spec = trial_spec(space, values)
            check_component_params(spec)
            validate_components(spec)
            with contextlib.suppress(OverBudgetError):  # a trial over a budget is pruned, not an error
                check_spec_budget(spec, root)
        except CifarBudgetError as exc:
            if not where:  # every parameter at its first value: name them, the cause may be [fixed]
                raise TuneError(f"{exc} (the trial {_describe(values)})") from None
            raise TuneError(f"{where}{exc}") from None
        specs.append(spec)
    reachable = {aug for spec in specs for aug in spec.augs}  # the probes cover every pipeline choice
    pipelines = ", ".join(sorted({"+".join(s.augs) or "none" for s in specs}))
    for p in space.params:
        if p.field == "aug_params" and p.path[0] not in reachable:
            raise TuneError(
                f"{p.name} is searched, but {p.path[0]} is in no pipeline a trial can have "
                f"({pipelines}): every value would train the same runs"
            )
    for aug in space.shared.fixed.get("aug_params") or {}:  # trial_spec drops them silently
        if aug not in reachable:
            raise TuneError(
                f"--aug-param {aug}.* (aug_params): {aug!r} is in no pipeline a trial can have ({pipelines})"
            )
    for spec in specs:
        if spec.val_size == 0:
            raise TuneError(
                "tune selects on the validation split: val_size must be above 0 "
                "(the objective is the mean validation accuracy)"
            )
        if spec.epochs >= SEED_STEP:
            raise TuneError(f"tune reports pruning steps per epoch: epochs must be below {SEED_STEP}")
    return specs[0]


# --- the study -----------------------------------------------------------------------------------
def default_storage(results_dir: Path, study_name: str) -> str:
    """``sqlite:///<results_dir>/tune-<study>.db`` (an absolute path)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    return f"sqlite:///{(Path(results_dir).expanduser().resolve() / f'tune-{safe}.db').as_posix()}"


def shown_url(url: str) -> str:
    """A storage URL with its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str) -> Any:
    """An Optuna RDB storage for ``url``; a bad URL or a missing driver is a one-line error."""
    optuna = require_optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several tune processes, one file
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as exc:
        first = describe(exc, with_type=False)
        raise TuneError(f"cannot open the study storage {shown_url(url)}: {first}") from None


def setup_of(space: TuneSpace, seeds: int) -> dict[str, Any]:
    """What a study's trials share and what their values mean: stored with the study."""
    return {
        "objective": OBJECTIVE,
        "seeds": seeds,
        "params": {p.name: p.to_dict() for p in space.params},
        "fixed": json.loads(json.dumps(space.shared.fixed, sort_keys=True, default=list)),
        "recipe": space.shared.recipe,
        "data": sorted(set(space.data_ids.values())),  # the data fingerprints (filled by check_space)
    }


def _check_setup(study: Any, setup: dict[str, Any], name: str) -> None:
    stored = study.user_attrs.get(SETUP_ATTR)
    if stored is None:
        if any(t.state.name != "WAITING" for t in study.get_trials(deepcopy=False)):
            raise TuneError(f"study {name!r} was not made by cifarbudget tune; use another --study-name")
        study.set_user_attr(SETUP_ATTR, setup)
        return
    for key in ("objective", "seeds", "params", "fixed", "recipe", "data"):
        was, now = stored.get(key), setup[key]
        if json.dumps(was, sort_keys=True) != json.dumps(now, sort_keys=True):
            raise TuneError(
                f"study {name!r} was made with other {key} ({_difference(was, now)}); "
                "continue it with the same space, options and --seeds, or pass another --study-name"
            )


def _difference(was: Any, now: Any) -> str:
    """What differs between two stored values: for tables, the keys that differ (``weight_decay:
    absent -> 0.0005``), so the difference is never cut off by the values before it."""
    if isinstance(was, dict) and isinstance(now, dict):
        changed = []
        for key in sorted(set(was) | set(now), key=str):
            a, b = was.get(key, _ABSENT), now.get(key, _ABSENT)
            if a is _ABSENT or b is _ABSENT or json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
                changed.append(f"{key}: {_shown(a)} -> {_shown(b)}")
        shown = changed[:3] + ([f"{len(changed) - 3} more"] if len(changed) > 3 else [])
        return "; ".join(shown)
    return f"was {_shown(was)}, now {_shown(now)}"


_ABSENT = object()


def _shown(value: Any) -> str:
    return "absent" if value is _ABSENT else _short(json.dumps(value, sort_keys=True), 120)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale_trials(study: Any, storage: Any) -> list[int]:
    """Mark FAIL the RUNNING trials whose tune process on this machine is gone; queue their params again.

    A trial records its process (host, pid) when it starts. One that is still RUNNING while that
    process no longer exists was killed (SIGKILL, out of memory, power loss): it is marked FAIL
    with the reason in its ``failed_because`` attribute, and its parameters are enqueued so the
    next trial trains the same configuration (finished runs are found, the interrupted one
    resumes from its checkpoint). Trials of other machines are left alone.
    """
    from optuna.trial import TrialState

    host, me = socket.gethostname(), os.getpid()
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR) or {}
        pid = owner.get("pid")
        if owner.get("host") != host or not isinstance(pid, int) or (pid != me and _alive(pid)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(
                trial_id,
                "failed_because",
                f"its tune process (pid {pid}) ended while it ran; its parameters were queued again",
            )
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except Exception:  # another tune process handled it first
            continue
        _enqueue_once(study, trial.params)
        failed.append(trial.number)
        log.warning(
            "trial %d was left running by a process that is gone: marked failed, queued again", trial.number
        )
    return failed


class _Interrupts:
    """Ctrl-C (and any other Python-handled signal, such as the CLI's SIGTERM) raises only while a
    trial's objective runs; elsewhere it is held and raised at the next safe point.

    Raised anywhere, the exception lands in Optuna's bookkeeping after the objective (which then
    fails with an unrelated error and leaves the trial RUNNING) or in a finalizer of Optuna's
    ``gc.collect()`` between trials (where Python prints it and drops it, so the study goes on).
    Held, it is raised by :meth:`check`: between trials (an Optuna callback), before the study
    starts and after it ends, and when the next objective starts.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.armed = False
        self.pending: list[tuple[Any, int, Any]] = []  # (previous handler, signal, frame)
        self.previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        """Handle the signals for the duration (only the main thread can; elsewhere nothing changes)."""
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is None:
                    continue
                handler = signal.getsignal(number)
                if callable(handler):  # a Python handler that raises (SIGINT: KeyboardInterrupt)
                    self.previous[number] = handler
                    signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, handler in self.previous.items():
                signal.signal(number, handler)
            self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        handler = self.previous.get(signum, signal.default_int_handler)
        self.pending.append((handler, signum, frame))  # kept in case a finalizer swallows the raise
        if self.armed:
            self.armed = False  # the objective's cleanup (queueing the trial again) is not cut short
            handler(signum, frame)

    def delivered(self) -> None:
        """The objective has seen the exception: nothing is held any more."""
        self.pending.clear()

    def check(self) -> None:
        """Raise a held signal's exception now."""
        if self.pending:
            handler, signum, frame = self.pending.pop(0)
            self.pending.clear()
            handler(signum, frame)

    @contextlib.contextmanager
    def armed_while(self) -> Iterator[None]:
        """Signals raise at once inside (a held one first)."""
        self.check()
        self.armed = True
        try:
            yield
        finally:
            self.armed = False

    def between_trials(self, study: Any, trial: Any) -> None:
        """An Optuna callback: after a trial is stored and collected, raise a held signal."""
        self.check()


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` arose while a Ctrl-C was being handled (a KeyboardInterrupt in its context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__context__ or current.__cause__
    return False


def _enqueue_once(study: Any, params: Mapping[str, Any]) -> None:
    """Queue ``params`` unless a waiting trial already holds them (an interrupted trial was queued
    by its process, and the next ``tune`` finds it left RUNNING as well)."""
    from optuna.trial import TrialState

    wanted = json.dumps(dict(params), sort_keys=True)
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        held = waiting.system_attrs.get("fixed_params", waiting.params)
        if json.dumps(dict(held), sort_keys=True) == wanted:
            return
    study.enqueue_trial(dict(params))


# --- the objective -------------------------------------------------------------------------------
class _StopRun(BaseException):
    """Raised by the live reporter to stop a pruned run: a BaseException so that the runner's
    callback guard (which turns a callback's ``Exception`` into a warning) lets it through."""


class _Reporter:
    """Reports the seed-averaged validation accuracy of each epoch to the trial (live, as a run callback)."""

    name = "optuna"

    def __init__(
        self,
        trial: Any,
        seed_index: int,
        previous: list[list[float]],
        reported: set[int],
        prune: bool,
        epochs: int,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.trial = trial
        self.seed_index = seed_index
        self.previous = previous  # the validation curves of the seeds before this one
        self.reported = reported  # the steps this trial has reported
        self.prune = prune
        self.epochs = epochs  # the run's last epoch: only its evaluation follows
        self.check = check  # raises a Ctrl-C that a finalizer swallowed during the epoch

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.check()
        value = metrics.get("val_acc")
        if value is None or not math.isfinite(float(value)):
            return
        _report(self.trial, self.reported, self.seed_index, int(epoch), [*self._at(epoch), float(value)])
        # never stop a run after its last epoch: the training is spent, the run would stay "running",
        # and a fully trained last seed would lose its value; after a seed that is not the last,
        # the trial's check after the seed prunes it with the finished record
        if self.prune and int(epoch) < self.epochs and self.trial.should_prune():
            raise _StopRun(f"the median rule after epoch {epoch} of seed {self.seed_index}")

    def _at(self, epoch: int) -> list[float]:
        return [curve[epoch - 1] for curve in self.previous if len(curve) >= epoch]


def _report(trial: Any, reported: set[int], seed_index: int, epoch: int, values: list[float]) -> None:
    """Report the mean of ``values`` at step ``SEED_STEP * seed_index + epoch``, once."""
    step = SEED_STEP * seed_index + epoch
    if step not in reported:
        trial.report(statistics.fmean(values), step)
        reported.add(step)


def seed_median_pruner(optuna: Any, *, startup: int, warmup: int) -> Any:
    """The median stopping rule, applied within one seed's block of steps.

    Optuna's ``MedianPruner`` compares the *best* value a trial reported at any step with the
    other trials' median at the current step. Here seed ``k``'s steps follow seed ``k-1``'s, so
    from the second seed on, the first seed's best epoch would be compared with the others' early
    epochs of the seed prefix, and a trial would hardly ever be pruned after its first seed. This rule
    takes the best value over the current seed's steps only (``SEED_STEP * k + 1 .. step``), and
    otherwise is Optuna's: no pruning before ``startup`` completed trials, nor at a step below
    ``warmup`` (so epochs of the first seed), and a trial with no finite value is pruned.
    """

    class SeedMedianPruner(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            step = trial.last_step
            if not completed or len(completed) < startup or step is None or step < warmup:
                return False
            first = step - step % SEED_STEP
            mine = [v for s, v in trial.intermediate_values.items() if first < s <= step and math.isfinite(v)]
            if not mine:
                return True
            others = [
                t.intermediate_values[step]
                for t in completed
                if step in t.intermediate_values and math.isfinite(t.intermediate_values[step])
            ]
            return bool(others) and max(mine) < statistics.median(others)

    return SeedMedianPruner()


def runner_takes_callbacks() -> bool:
    """Whether :class:`cifarbudget.runner.RunSettings` accepts callback objects (live pruning)."""
    from cifarbudget.runner import RunSettings

    return "callbacks" in {f.name for f in dataclasses.fields(RunSettings)}


@dataclass
class _Objective:
    space: TuneSpace
    seeds: int
    prune: bool
    progress: bool
    interrupts: _Interrupts = field(default_factory=_Interrupts)
    ran: list[int] = field(default_factory=list)  # the trials this objective ran

    def __call__(self, trial: Any) -> float:
        self.ran.append(trial.number)
        try:
            with self.interrupts.armed_while():
                return self._run(trial)
        except KeyboardInterrupt:
            self.interrupts.delivered()
            # Optuna marks the trial FAIL; queue its parameters so that a rerun resumes its runs
            if trial.params:
                _enqueue_once(trial.study, trial.params)
                trial.set_user_attr("failed_because", "interrupted; its parameters were queued again")
            else:
                trial.set_user_attr("failed_because", "interrupted before it drew its parameters")
            raise

    def _run(self, trial: Any) -> float:
        optuna = require_optuna()
        from cifarbudget.data.core import default_data_dir
        from cifarbudget.results import DIVERGED
        from cifarbudget.runner import RunSettings, check_spec_budget, run_spec
        from cifarbudget.sweep.store import load_or_none, lock_path, run_lock

        trial.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})
        values = suggest_values(self.space, trial)
        shared = self.space.shared
        spec0 = trial_spec(self.space, values, 0)
        root = Path(shared.data_dir).expanduser() if shared.data_dir else default_data_dir()
        described = _describe(values)
        try:
            report = check_spec_budget(spec0, root)
        except OverBudgetError as exc:
            why = f"over budget, not trained: {exc}".replace("refusing to train: ", "")
            why = why.split("; pass --allow-over-budget")[0]
            trial.set_user_attr("pruned_because", why)
            log.info("trial %d (%s): pruned, %s", trial.number, described, why)
            raise optuna.TrialPruned(why) from None

        results_dir = Path(shared.results_dir).expanduser()
        live = runner_takes_callbacks()
        curves: list[list[float]] = []
        reported: set[int] = set()
        run_ids: list[str] = []
        accs: list[float] = []
        trained: list[bool] = []
        for k in range(self.seeds):
            spec = dataclasses.replace(spec0, seed=k)
            run_ids.append(spec.run_id)
            trial.set_user_attr("run_ids", run_ids)
            reporter = _Reporter(trial, k, curves, reported, self.prune, spec.epochs, self.interrupts.check)
            live_callbacks: dict[str, Any] = {"callbacks": (reporter,)} if live else {}
            settings = RunSettings(
                data_dir=root if shared.data_dir else None,
                download=shared.download,
                results_dir=results_dir,
                device=shared.device,
                amp=shared.amp,
                channels_last=shared.channels_last,
                compile=shared.compile,
                deterministic=shared.deterministic,
                aug_chunk=shared.aug_chunk,
                progress=self.progress,
                track=tuple(shared.track),
                **live_callbacks,
            )
            # one process trains a run at a time: other tune workers wait, then find it finished
            settled = _settled(load_or_none(results_dir / spec.run_id))
            guard = (
                contextlib.nullcontext()
                if settled
                else run_lock(lock_path(results_dir, spec.run_id), wait=True)
            )
            with guard:
                settled = settled or _settled(load_or_none(results_dir / spec.run_id))
                trained.append(not settled)
                trial.set_user_attr("trained", trained)
                try:
                    record = run_spec(spec, settings, report=report)
                except _StopRun as stop:
                    why = f"{stop} (its run stopped unfinished)"
                    trial.set_user_attr("pruned_because", why)
                    log.info("trial %d (%s): pruned by %s", trial.number, described, why)
                    raise optuna.TrialPruned(why) from None
                except OverBudgetError as exc:  # a verdict only the loaded data could give (no metadata)
                    why = f"over budget, not trained: {exc}".replace("refusing to train: ", "")
                    why = why.split("; pass --allow-over-budget")[0]
                    trial.set_user_attr("pruned_because", why)
                    log.info("trial %d (%s): pruned, %s", trial.number, described, why)
                    raise optuna.TrialPruned(why) from None
            if record.status == DIVERGED:
                why = f"seed {k} diverged: {record.error or 'non-finite loss'}"
                trial.set_user_attr("pruned_because", why)
                log.info("trial %d (%s): pruned, %s", trial.number, described, why)
                raise optuna.TrialPruned(why)
            curve = [float(h["val_acc"]) for h in record.history if h.get("val_acc") is not None]
            val_acc = record.final.get("val_acc")
            if val_acc is None or len(curve) != len(record.history):
                raise TuneError(f"run {spec.run_id} has no validation accuracy (val_size 0?)")
            curves.append(curve)
            for epoch in range(1, len(curve) + 1):  # what the live reporter did not report
                _report(trial, reported, k, epoch, [c[epoch - 1] for c in curves])
            accs.append(float(val_acc))
            trial.set_user_attr("val_accs", accs)
            log.info(
                "trial %d (%s): seed %d val_acc %.4f%s",
                trial.number,
                described,
                k,
                val_acc,
                "" if trained[-1] else " (recorded run, not trained again)",
            )
            if self.prune and k < self.seeds - 1 and trial.should_prune():
                why = f"the median rule after seed {k}"
                trial.set_user_attr("pruned_because", why)
                log.info("trial %d (%s): pruned by %s", trial.number, described, why)
                raise optuna.TrialPruned(why)
        value = statistics.fmean(accs)
        log.info(
            "trial %d (%s): %.4f, the mean val_acc of %d seeds", trial.number, described, value, self.seeds
        )
        return value


def _settled(record: Any) -> bool:
    from cifarbudget.results import SETTLED

    return record is not None and record.status in SETTLED


def _describe(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


# --- the result ----------------------------------------------------------------------------------
@dataclass
class TrialRow:
    """One trial of the study as ``tune`` prints it."""

    number: int
    state: str  # complete | pruned | fail | running | waiting
    value: float | None
    params: dict[str, Any]
    run_ids: list[str] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)
    trained: list[bool] = field(default_factory=list)
    note: str = ""
    seconds: float | None = None

    @classmethod
    def from_frozen(cls, trial: Any) -> TrialRow:
        attrs = trial.user_attrs
        seconds = None
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        return cls(
            number=trial.number,
            state=trial.state.name.lower(),
            value=trial.value if trial.state.name == "COMPLETE" else None,
            params=dict(trial.params),
            run_ids=list(attrs.get("run_ids", [])),
            val_accs=list(attrs.get("val_accs", [])),
            trained=list(attrs.get("trained", [])),
            note=str(attrs.get("pruned_because") or attrs.get("failed_because") or ""),
            seconds=seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TuneResult:
    """What :func:`tune` did and where the study stands."""

    study_name: str
    storage: str  # the URL, password hidden
    results_dir: str
    seeds: int
    trials_target: int
    trials: list[TrialRow]
    new_trials: list[int]  # the trials this call ran
    stale: list[int]  # trials found left running by a dead process, marked failed
    live_pruning: bool
    param_names: list[str]

    @property
    def best(self) -> TrialRow | None:
        done = [t for t in self.trials if t.state == "complete" and t.value is not None]
        return max(done, key=lambda t: (t.value, -t.number)) if done else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "study": self.study_name,
            "storage": self.storage,
            "results_dir": self.results_dir,
            "direction": "maximize",
            "objective": OBJECTIVE.replace("N-1", str(self.seeds - 1)),
            "seeds": self.seeds,
            "trials_target": self.trials_target,
            "counts": self.counts(),
            "new_trials": self.new_trials,
            "stale_trials_failed": self.stale,
            "live_pruning": self.live_pruning,
            "best": best.to_dict() if best else None,
            "trials": [t.to_dict() for t in self.trials],
        }

    def table_rows(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.trials:
            row: dict[str, Any] = {"trial": t.number, "state": t.state}
            row["mean val_acc"] = f"{t.value:.4f}" if t.value is not None else ""
            for name in self.param_names:
                v = t.params.get(name, "")
                row[name] = f"{v:.4g}" if isinstance(v, float) else v
            row["runs trained"] = f"{sum(t.trained)}/{len(t.run_ids)}" if t.run_ids else ""
            row["note"] = _short(t.note, 60)
            rows.append(row)
        return rows

    def summary(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts().items()))
        lines = [
            f"study {self.study_name!r} in {self.storage}: {len(self.trials)} trials ({counts or 'none'}); "
            f"objective: mean val_acc over seeds 0..{self.seeds - 1}"
        ]
        best = self.best
        if best is None:
            lines.append("no trial has completed yet")
        else:
            lines.append(
                f"best: trial {best.number}, mean val_acc {best.value:.4f}: {_describe(best.params)}"
            )
            lines.append(f"  runs: {', '.join(best.run_ids)}")
        # a trial pruned after its first seeds leaves configurations with fewer seeds, which a plain
        # board would rank by their mean like the complete ones
        min_seeds = f" --min-seeds {self.seeds}" if self.seeds > 1 else ""
        lines.append(
            f"rank the runs: cifarbudget leaderboard {shlex.quote(str(self.results_dir))}{min_seeds}; "
            "search further: rerun with a larger --trials"
        )
        return "\n".join(lines)


# --- the entry point ----------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_optuna(optuna: Any) -> Iterator[None]:
    """Optuna's own lines off (tune logs its own; a failed trial's error reaches the CLI as one line)."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _optimize(
    optuna: Any,
    space: TuneSpace,
    rdb: Any,
    url: str,
    interrupts: _Interrupts,
    *,
    seeds: int,
    trials: int,
    study_name: str,
    sampler_seed: int | None,
    prune: bool,
    prune_startup: int,
    prune_warmup: int,
    progress: bool,
) -> tuple[Any, list[int], _Objective]:
    """Open (or continue) the study and run its missing trials; Ctrl-C raises only inside a trial."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    results_dir = Path(space.shared.results_dir).expanduser()
    pruner = (
        seed_median_pruner(optuna, startup=prune_startup, warmup=prune_warmup)
        if prune
        else optuna.pruners.NopPruner()
    )
    try:
        study = optuna.create_study(
            study_name=study_name, storage=rdb, direction="maximize", pruner=pruner, load_if_exists=True
        )
    except Exception as exc:
        first = describe(exc, with_type=False)
        raise TuneError(f"cannot open study {study_name!r} in {shown_url(url)}: {first}") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise TuneError(f"study {study_name!r} minimises; tune maximises accuracy: use another --study-name")
    _check_setup(study, setup_of(space, seeds), study_name)
    stale = fail_stale_trials(study, rdb)
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=None if sampler_seed is None else sampler_seed + existing)
    objective = _Objective(space, seeds, prune, progress, interrupts)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=finished))
    interrupts.check()  # a Ctrl-C while the study was opened: no trial starts
    if remaining > 0:
        log.info(
            "study %r: %d of %d trials finished; running %d more (%d seeds each) into %s",
            study_name,
            trials - remaining,
            trials,
            remaining,
            seeds,
            results_dir,
        )
        study.optimize(
            objective,
            n_trials=remaining,
            callbacks=[MaxTrialsCallback(trials, states=finished), interrupts.between_trials],
            catch=(),
            gc_after_trial=True,
        )
    else:
        log.info(
            "study %r already has %d finished trials (--trials %d): nothing to run",
            study_name,
            trials - remaining,
            trials,
        )
    return study, stale, objective


def tune(
    space: TuneSpace | str | Path,
    *,
    seeds: int,
    trials: int,
    study_name: str | None = None,
    storage: str | None = None,
    sampler_seed: int | None = None,
    prune: bool = True,
    prune_startup: int = 5,
    prune_warmup: int = 0,
    progress: bool = True,
    options: Mapping[str, Any] | None = None,
    **settings: Any,
) -> TuneResult:
    """Search ``space`` with Optuna until the study has ``trials`` finished trials; return the study's state.

    ``space``: a :class:`TuneSpace` or a search-space file. ``options``: RunSpec fields that
    override the file's ``[fixed]`` (a searched field cannot also be fixed); ``settings``:
    ``results_dir``, ``data_dir``, ``download``, ``device``, ``amp``, ``channels_last``,
    ``compile``, ``deterministic``, ``track``, ``recipe`` (``None`` = the file's). ``study_name``
    defaults to the space file's stem (``tune`` for a :class:`TuneSpace`); ``storage`` to
    :func:`default_storage`. ``sampler_seed``: TPE's seed, offset by the number of trials the
    study already has (so a continued study draws new points); ``None`` = random. Pruning:
    :func:`seed_median_pruner` (Optuna's median rule within each seed's steps) with
    ``prune_startup`` completed trials first and ``prune_warmup`` epochs of the first seed.
    """
    optuna = require_optuna()

    if seeds < 1 or trials < 1:
        raise TuneError(f"--seeds and --trials must be at least 1 (got {seeds} and {trials})")
    if prune_startup < 0 or prune_warmup < 0:
        raise TuneError("--prune-startup and --prune-warmup must be non-negative")
    if not isinstance(space, TuneSpace):
        path = Path(space)
        space = load_space(path)
        study_name = study_name or path.stem
    study_name = study_name or "tune"
    options = {k: v for k, v in (options or {}).items() if v is not None and v != ()}
    settings = {k: v for k, v in settings.items() if v is not None and v != ()}
    try:
        keys = {field_for_key(k, where="the run options").name: v for k, v in options.items()}
    except RunError as exc:
        raise TuneError(str(exc)) from None
    _refuse_fixed(keys, "the run options")
    _check_overlap(space, keys, "options")
    try:
        shared = space.shared.with_overrides({}, keys, **settings)
    except CifarBudgetError as exc:
        raise TuneError(str(exc)) from None
    space = TuneSpace(space.params, shared, space.source)  # (a new data_id cache: data_dir may differ)
    check_space(space)

    results_dir = Path(shared.results_dir).expanduser()
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TuneError(f"cannot create the results folder {results_dir}: {exc.strerror or exc}") from None
    url = storage or default_storage(results_dir, study_name)
    rdb = open_storage(url)
    interrupts = _Interrupts()
    with interrupts.installed(), _quiet_optuna(optuna):
        try:
            study, stale, objective = _optimize(
                optuna,
                space,
                rdb,
                url,
                interrupts,
                seeds=seeds,
                trials=trials,
                study_name=study_name,
                sampler_seed=sampler_seed,
                prune=prune,
                prune_startup=prune_startup,
                prune_warmup=prune_warmup,
                progress=progress,
            )
        except Exception as exc:
            if interrupts.pending or _interrupted(exc):  # Ctrl-C, seen through another error
                raise KeyboardInterrupt from None
            raise
        interrupts.check()
        rows = [TrialRow.from_frozen(t) for t in study.get_trials(deepcopy=False)]
    return TuneResult(
        study_name=study_name,
        storage=shown_url(url),
        results_dir=str(results_dir),
        seeds=seeds,
        trials_target=trials,
        trials=rows,
        new_trials=objective.ran,
        stale=stale,
        live_pruning=runner_takes_callbacks(),
        param_names=space.names,
    )

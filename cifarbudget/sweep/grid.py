"""A sweep's definition: the grid of :class:`RunSpec` fields (x seeds), the fields every run shares,
where and how to run; read from options or a TOML file, expanded into checked, de-duplicated specs.

Keys are RunSpec field names or their flag spellings (``wd``, ``aug``, ``warmup``), checked
against :func:`cifarbudget.spec.spec_fields` at the moment of use, so a field added to RunSpec is
a sweep key at once. Values are coerced by :func:`cifarbudget.spec.coerce`, the same as ``run``.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarbudget.errors import CifarBudgetError, RunError
from cifarbudget.spec import RunSpec, coerce, field_for_key, resolve_spec, spec_fields

EXECUTORS = ("local", "ray")
DEFAULT_RESULTS_DIR = "results/runs"
# Options shared by every run that are not part of the spec (they do not change the run id).
SETTINGS = (
    "recipe",
    "data_dir",
    "download",
    "results_dir",
    "device",
    "amp",
    "channels_last",
    "compile",
    "deterministic",
    "aug_chunk",
    "track",
)
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "recipe": (str,),
    "data_dir": (str,),
    "download": (bool,),
    "results_dir": (str,),
    "device": (str,),
    "amp": (bool,),
    "channels_last": (bool,),
    "compile": (bool,),
    "deterministic": (bool,),
    "aug_chunk": (int,),
    "track": (list, tuple),
    "executor": (str,),
    "workers": (int,),
    "ray_address": (str,),
}
TOP_LEVEL = ("executor", "workers", "ray_address", "grid", "fixed")
_SHORT = {"weight_decay": "wd", "warmup_epochs": "warmup", "batch_size": "batch-size"}
# Spec fields shown in their own dry-run column; the other axes are listed as "hyperparameters".
OWN_COLUMNS = ("seed", "model", "augs", "sched", "tta")


class SweepError(CifarBudgetError):
    """A sweep definition is invalid (unknown key, bad value, empty axis, bad executor)."""


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing file or bad TOML is a one-line SweepError."""
    from cifarbudget.io import read_toml as read

    return read(path, SweepError)


def axis_order() -> tuple[str, ...]:
    """Spec fields in the order the grid is expanded: seeds outermost, so that an interrupted sweep
    has one seed of every configuration before the second seed of any."""
    return ("seed", *[f.name for f in spec_fields() if f.name != "seed"])


def _spec_key(raw: str, where: str, *, grid: bool) -> str:
    """The RunSpec field a key names (aliases allowed), or a one-line SweepError with suggestions."""
    if grid and str(raw).strip().replace("-", "_") == "seeds":
        return "seeds"
    try:
        return field_for_key(raw, where=where).name
    except RunError as exc:
        raise SweepError(str(exc)) from None


def _setting_key(raw: str, allowed: Sequence[str], where: str) -> str:
    key = str(raw).strip().replace("-", "_")
    if key not in allowed:
        close = difflib.get_close_matches(key, list(allowed), n=3, cutoff=0.6)
        hint = (
            f" Did you mean: {', '.join(close)}?" if close else f" Known keys: {', '.join(sorted(allowed))}."
        )
        raise SweepError(f"unknown key {raw!r} in {where}.{hint}")
    return key


def _check_run_config_keys(path: Path, keys: Sequence[str]) -> None:
    """A run config file's keys are run options and settings: a sweep's own settings are refused
    as such, any other unknown key with the closest known keys (options and settings alike)."""
    from cifarbudget.spec import spec_fields

    known = [*SETTINGS] + [name for f in spec_fields() for name in (f.name, *f.aliases)]
    for raw in keys:
        key = str(raw).strip().replace("-", "_")
        if key in ("executor", "workers", "ray_address"):
            raise SweepError(f"{path}: {raw!r} is a sweep setting; a run config holds one run's options")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = (
                f" Did you mean: {', '.join(close)}?"
                if close
                else f" Known keys: {', '.join(sorted(set(known)))}."
            )
            raise SweepError(f"unknown key {raw!r} in {path}.{hint}")


def _coerce(key: str, value: Any) -> Any:
    try:
        return coerce(key, value)
    except RunError as exc:
        raise SweepError(str(exc)) from None


@dataclass
class Sweep:
    """A grid of RunSpec fields (x seeds), the fields and options every run shares, and the executor.

    ``grid`` maps a RunSpec field to the list of its values (``augs`` values are pipelines,
    ``seed`` the seeds); ``fixed`` maps RunSpec fields to one value. Build one with
    :meth:`from_options` or :meth:`from_toml`, which check keys and coerce values.
    """

    grid: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    data_dir: str | None = None
    download: bool = False
    results_dir: str = DEFAULT_RESULTS_DIR
    device: str | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    deterministic: bool = False
    aug_chunk: int = 1
    track: tuple[str, ...] = ()
    executor: str = "local"
    # local: worker processes (default 1); ray: most runs in flight at once (default: no cap)
    workers: int | None = None
    ray_address: str | None = None

    @classmethod
    def from_options(
        cls, grid: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None, **settings: Any
    ) -> Sweep:
        """A sweep from raw values (strings allowed); ``None`` values mean "not given"."""
        return cls().with_overrides(grid or {}, fixed or {}, **settings)

    @classmethod
    def from_toml(cls, path: str | Path, *, flat: bool = False) -> Sweep:
        """Read a sweep file: top-level ``executor``/``workers``/``ray_address``, ``[grid]``, ``[fixed]``.

        ``flat``: a run config file (``run --config``), whose top-level keys are the ``[fixed]``
        table of a sweep file of one point (``[grid]``/``[fixed]`` tables are accepted too).
        """
        path = Path(path)
        data = read_toml(path)
        where = "[fixed]"
        if flat:
            tables = {k: data.pop(k) for k in ("grid", "fixed") if isinstance(data.get(k), dict)}
            _check_run_config_keys(path, [*data, *tables.get("fixed", {}), *tables.get("grid", {})])
            data = {**tables, "fixed": {**data, **tables.get("fixed", {})}}
            where = str(path)
        for key in data:
            if key not in TOP_LEVEL:
                _setting_key(key, TOP_LEVEL, str(path))  # raises with a suggestion
        grid, fixed = data.get("grid", {}), data.get("fixed", {})
        if not isinstance(grid, dict) or not isinstance(fixed, dict):
            raise SweepError(f"{path}: [grid] and [fixed] must be tables")
        settings = {k: fixed[k] for k in list(fixed) if k.replace("-", "_") in SETTINGS}
        spec_fixed = {k: v for k, v in fixed.items() if k not in settings}
        settings = {k.replace("-", "_"): v for k, v in settings.items()}
        top = {k: data[k] for k in ("executor", "workers", "ray_address") if k in data}
        if flat:  # a run may train over budget when asked (--allow-over-budget); a sweep never does
            return cls().with_overrides(grid, spec_fixed, _where=where, _run=True, **settings)
        return cls().with_overrides(grid, spec_fixed, **settings, **top)

    def with_overrides(
        self,
        grid: Mapping[str, Any],
        fixed: Mapping[str, Any],
        *,
        _where: str = "[fixed]",
        _run: bool = False,
        **settings: Any,
    ) -> Sweep:
        """A copy where the given axes, fixed fields and settings (not ``None``) replace this sweep's.

        ``_where`` names the fixed fields' place in errors; ``_run``: they are one run's options
        (``run --config``), which may set ``allow_over_budget``.
        """
        new_grid, new_fixed = dict(self.grid), dict(self.fixed)
        grid_keys = [_spec_key(k, "[grid]", grid=True) for k in grid]
        if "seeds" in grid_keys and "seed" in grid_keys:
            raise SweepError("give the seeds as 'seeds = N' (seeds 0..N-1) or as 'seed = [...]', not both")
        for key, values in zip(grid_keys, grid.values(), strict=True):
            if key == "seeds":
                key, points = "seed", _seed_range(values)
            else:  # a list of points (an aug point may itself be a list: one pipeline), or one point
                listed = list(values) if isinstance(values, list | tuple) else [values]
                points = [_coerce(key, v) for v in listed]
            if not points:
                raise SweepError(f"the {key} axis has no values")
            if key == "allow_over_budget":
                raise SweepError("a sweep never trains over-budget models: allow_over_budget cannot be set")
            new_grid[key] = list(dict.fromkeys(_hashable(p) for p in points))
            new_fixed.pop(key, None)
        for raw, value in fixed.items():
            key = _spec_key(raw, _where, grid=False)
            if key == "allow_over_budget" and not _run:
                raise SweepError("a sweep never trains over-budget models: allow_over_budget cannot be set")
            new_fixed[key] = _coerce(key, value)
            new_grid.pop(key, None)
        changes: dict[str, Any] = {}
        for raw, value in settings.items():
            key = _setting_key(raw, list(_SETTING_TYPES), "the sweep settings")
            if value is None:
                continue
            kinds = _SETTING_TYPES[key]
            if isinstance(value, Path) and str in kinds:
                value = str(value)
            if key == "track" and isinstance(value, list | tuple):
                if not all(isinstance(v, str) for v in value):
                    raise SweepError(f"track must be a list of tracker names (got {value!r})")
                value = tuple(value)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                names = " or ".join("true/false" if k is bool else k.__name__ for k in kinds)
                raise SweepError(f"{key} must be {names} (got {value!r})")
            changes[key] = value
        sweep = dataclasses.replace(self, grid=new_grid, fixed=new_fixed, **changes)
        if sweep.executor not in EXECUTORS:
            raise SweepError(f"unknown executor {sweep.executor!r}; use one of: {', '.join(EXECUTORS)}")
        if sweep.workers is not None and sweep.workers < 1:
            raise SweepError(f"workers must be at least 1 (got {sweep.workers})")
        if sweep.aug_chunk < 1:
            raise SweepError(f"aug_chunk must be at least 1 (got {sweep.aug_chunk})")
        return sweep

    @property
    def results_path(self) -> Path:
        return Path(self.results_dir).expanduser().resolve()

    def specs(self) -> list[RunSpec]:
        return expand_grid(self)


def _seed_range(value: Any) -> list[int]:
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    n = value if isinstance(value, int) and not isinstance(value, bool) else -1  # not 2.5, not "3"
    if n < 1:
        raise SweepError(
            f"seeds must be a positive number of seeds (got {value!r}); seeds N runs seeds 0..N-1"
        )
    return list(range(n))


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def _unhash(key: str, value: Any) -> Any:
    return json.loads(value) if key == "aug_params" and isinstance(value, str) else value


def expand_grid(sweep: Sweep) -> list[RunSpec]:
    """Every grid point as a checked :class:`RunSpec` (recipe <- fixed <- point), duplicates dropped.

    Every name is looked up in its registry here, so a typo fails before anything is built or
    trained. Seeds are the outermost loop.
    """
    if "model" not in sweep.grid and "model" not in sweep.fixed and sweep.recipe is None:
        raise SweepError("no model: pass --model (repeatable) or --recipe NAME, or set model in [grid]")
    keys = [k for k in axis_order() if k in sweep.grid]
    specs: dict[tuple[str, str], RunSpec] = {}
    data_ids: dict[str, str] = {}  # one fingerprint per dataset, not one per grid point
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        options = {**sweep.fixed, **{k: _unhash(k, v) for k, v in zip(keys, values, strict=True)}}
        spec = resolve_spec(
            recipe=sweep.recipe,
            data_dir=sweep.data_dir,
            data_id=data_ids.get(_dataset_of(sweep, options)),
            **options,
        )
        data_ids.setdefault(spec.dataset, spec.data_id)
        if set(spec.aug_params) - set(spec.augs):  # parameters of augmentations this point does not use
            spec = dataclasses.replace(
                spec, aug_params={k: v for k, v in spec.aug_params.items() if k in spec.augs}
            )
        if spec.tta_params and spec.tta == "none":  # a point without TTA has no policy to give them to
            spec = dataclasses.replace(spec, tta_params={})
        specs.setdefault((spec.run_id, spec.tta_key), spec)  # TTA variants share the run: trained once
    return list(specs.values())


def _dataset_of(sweep: Sweep, options: dict[str, Any]) -> str:
    """The dataset a grid point trains on, before resolving it (for the fingerprint cache)."""
    if "dataset" in options:
        return str(options["dataset"])
    if sweep.recipe is not None:
        from cifarbudget.plugins import get_registry

        preset = get_registry("recipes").create(sweep.recipe)
        if "dataset" in preset:
            return str(preset["dataset"])
    return "cifar10"


def hyperparameters(spec: RunSpec, keys: Sequence[str]) -> str:
    """``epochs=3 lr=0.05 wd=0.001``: the spec's values of ``keys`` as a short cell."""
    parts = []
    for key in keys:
        value = getattr(spec, key)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{_SHORT.get(key, key.replace('_', '-'))}={text}")
    return " ".join(parts)


def hyperparameter_keys(sweep: Sweep) -> list[str]:
    """The axes shown in the "hyperparameters" column: epochs, then every other axis of the grid."""
    return ["epochs"] + [k for k in axis_order() if k in sweep.grid and k not in (*OWN_COLUMNS, "epochs")]

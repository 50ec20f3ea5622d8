"""``RunSpec``: every field that defines a training run, the metadata the CLI is generated from,
and the one place where user values (command line, sweep files, recipes) become a checked spec.

Each field carries an :func:`option` in its metadata: the command-line flag, the help text and
whether a sweep may vary it. ``cifarbudget run`` and ``cifarbudget sweep`` generate their options
from these (:mod:`cifarbudget.commands.options`), and sweep files accept the field names and the
flag names as keys, so adding a field here adds it everywhere. Nothing here imports torch.

Two specs with the same id train the same thing: :mod:`cifarbudget.identity` hashes the resolved
training configuration (every component with its resolved parameters, the data's fingerprint,
the seed), and nothing that does not change training (TTA, the budget verdict, where the data
lives or results go, how fast the run goes).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cifarbudget.errors import RunError

log = logging.getLogger("cifarbudget")


def option(
    help: str,
    *,
    flag: str | None = None,
    axis: bool = True,
    cli: bool = True,
    registry: str | None = None,
    cli_type: type | None = None,
) -> dict[str, Any]:
    """Field metadata: ``flag`` (default ``--field-name``), ``help`` (one sentence, no default: the
    default is appended from the field), ``axis`` (a sweep may vary it), ``cli`` (exposed as a
    flag at all), ``registry`` (the registry kind whose names the field holds), ``cli_type`` (the
    type the command line reads, when it is not the field's: a budget is read as text, ``5M``)."""
    return {
        "cifarbudget": {
            "help": help,
            "flag": flag,
            "axis": axis,
            "cli": cli,
            "registry": registry,
            "cli_type": cli_type,
        }
    }


DEFAULT_VAL_SIZE = 5000


@dataclass(frozen=True)
class RunSpec:
    """One training run. Field defaults are the paper's initial recipe on CIFAR-10."""

    model: str = field(
        default="resnetsmall",
        metadata=option("Model name (see 'cifarbudget list models').", registry="models"),
    )
    dataset: str = field(
        default="cifar10",
        metadata=option("Dataset name (see 'cifarbudget list datasets').", registry="datasets"),
    )
    augs: tuple[str, ...] = field(
        default=("crop-flip",),
        metadata=option(
            "Augmentation pipeline: names joined by '+' (crop-flip+cutmix), or repeat the option; "
            "crop-flip is the base the others add to, 'none' is no augmentation.",
            flag="--aug",
            registry="augmentations",
        ),
    )
    sched: str = field(
        default="multistep",
        metadata=option(
            "LR schedule, stepped per iteration (see 'cifarbudget list schedulers').", registry="schedulers"
        ),
    )
    warmup_epochs: float = field(
        default=0.0, metadata=option("Linear LR warmup, in epochs.", flag="--warmup")
    )
    tta: str = field(
        default="none",
        metadata=option("Test-time augmentation policy (see 'cifarbudget list tta').", registry="tta"),
    )
    epochs: int = field(default=100, metadata=option("Training epochs."))
    batch_size: int = field(default=128, metadata=option("Training batch size."))
    optimizer: str = field(
        default="sgd",
        metadata=option("Optimizer (see 'cifarbudget list optimizers').", registry="optimizers"),
    )
    lr: float = field(default=0.1, metadata=option("Peak learning rate."))
    momentum: float = field(default=0.9, metadata=option("SGD momentum."))
    nesterov: bool = field(default=False, metadata=option("Nesterov momentum."))
    weight_decay: float = field(default=5e-4, metadata=option("Weight decay.", flag="--wd"))
    label_smoothing: float = field(default=0.0, metadata=option("Label smoothing of the targets."))
    ema: float = field(
        default=0.0, metadata=option("Model EMA decay, e.g. 0.999 (0 = off); the EMA model is evaluated.")
    )
    seed: int = field(
        default=0,
        metadata=option("Random seed: weights, validation split, shuffling, augmentation.", axis=False),
    )
    val_size: int = field(
        default=5000,  # DEFAULT_VAL_SIZE
        metadata=option(
            "Held-out validation images taken from the training split, stratified (0 = train on all; the "
            "default 5000 is at most 10% of a smaller training split)."
        ),
    )
    train_subset: int = field(
        default=0, metadata=option("Train on this many of the remaining training images (0 = all).")
    )
    num_classes: int = field(
        default=0, metadata=option("Classifier outputs (0 = from the dataset).", cli=False)
    )
    budget: int = field(
        default=5_000_000,
        metadata=option("Parameter budget: 5M, 4.5M, 500k, 5000000.", axis=False, cli_type=str),
    )
    compute_budget: int = field(
        default=0,
        metadata=option(
            "Training-compute budget in MACs: 30T, 1.5P, 3e13 (0 = none); a plan over it is refused before training.",
            axis=False,
            cli_type=str,
        ),
    )
    allow_over_budget: bool = field(
        default=False,
        metadata=option("Train an over-budget model; the result is marked out of budget.", axis=False),
    )
    aug_params: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata=option(
            "One augmentation parameter, AUG.KEY=VALUE (e.g. cutmix.p=0.5); repeatable.",
            flag="--aug-param",
            axis=False,
        ),
    )
    loss: str = field(
        default="soft-ce",
        metadata=option("Training loss (see 'cifarbudget list losses').", registry="losses"),
    )
    model_params: dict[str, Any] = field(
        default_factory=dict,
        metadata=option(
            "One model option, KEY=VALUE (e.g. drop_path=0.1); repeatable.", flag="--model-param", axis=False
        ),
    )
    sched_params: dict[str, Any] = field(
        default_factory=dict,
        metadata=option(
            "One schedule parameter, KEY=VALUE (e.g. pct_start=0.25); repeatable.",
            flag="--sched-param",
            axis=False,
        ),
    )
    opt_params: dict[str, Any] = field(
        default_factory=dict,
        metadata=option(
            "One optimizer parameter, KEY=VALUE (e.g. bn_bias_lr_scale=64); repeatable.",
            flag="--opt-param",
            axis=False,
        ),
    )
    loss_params: dict[str, Any] = field(
        default_factory=dict,
        metadata=option(
            "One loss parameter, KEY=VALUE (e.g. teacher=results/runs/RUN); repeatable.",
            flag="--loss-param",
            axis=False,
        ),
    )
    tta_params: dict[str, Any] = field(
        default_factory=dict,
        metadata=option(
            "One TTA policy parameter, KEY=VALUE (e.g. fraction=0.5 for selective); repeatable. "
            "Evaluation only: the run id does not change.",
            flag="--tta-param",
            axis=False,
        ),
    )
    data_id: str = field(
        default="",
        metadata=option(
            "The data the run trains on: a hash of the dataset's content fingerprint and split sizes, "
            "filled in when the spec is resolved against a data folder.",
            cli=False,
            axis=False,
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "augs", tuple(self.augs))
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (self.lr > 0, f"--lr must be positive (got {self.lr})"),
            (self.weight_decay >= 0, f"--wd must be non-negative (got {self.weight_decay})"),
            (
                0 <= self.label_smoothing < 1,
                f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})",
            ),
            (0 <= self.ema < 1, f"--ema must be in [0, 1) (got {self.ema})"),
            (self.val_size >= 0, f"--val-size must be non-negative (got {self.val_size})"),
            (self.train_subset >= 0, f"--train-subset must be non-negative (got {self.train_subset})"),
            (self.warmup_epochs >= 0, f"--warmup must be non-negative (got {self.warmup_epochs})"),
            (
                self.warmup_epochs < self.epochs,
                f"--warmup {self.warmup_epochs:g} must be shorter than the run "
                f"({self.epochs} epoch{'' if self.epochs == 1 else 's'})",
            ),
            (self.seed >= 0, f"--seed must be a non-negative integer (got {self.seed})"),
            (self.momentum >= 0, f"--momentum must be non-negative (got {self.momentum})"),
            (self.compute_budget >= 0, f"--compute-budget must be non-negative (got {self.compute_budget})"),
        ]
        for ok, message in checks:
            if not ok:
                raise RunError(message)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augs"] = list(self.augs)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunError(f"unknown run option(s): {', '.join(unknown)}")
        return cls(**data)

    @property
    def run_id(self) -> str:
        """``<model>-<dataset>-e<epochs>-s<seed>-<hash>`` of the resolved training configuration
        (:func:`cifarbudget.identity.run_id`); stable across processes, machines and Python versions."""
        from cifarbudget.identity import run_id

        return run_id(self)

    @property
    def config_id(self) -> str:
        """The identity without the seed: runs that differ only in their seed share it."""
        from cifarbudget.identity import config_id

        return config_id(self)

    @property
    def tta_key(self) -> str:
        """The TTA policy with the parameters that differ from its defaults, as results key it:
        ``selective`` or ``selective(fraction=0.5)`` (:func:`cifarbudget.identity.tta_key`)."""
        from cifarbudget.identity import tta_key

        return tta_key(self.tta, self.tta_params)

    @property
    def pipeline(self) -> str:
        """The augmentation pipeline as the leaderboard prints it and every command accepts it."""
        return "+".join(self.augs) or "none"

    def describe(self) -> str:
        from cifarbudget.progress import plural

        return (
            f"{self.model} on {self.dataset}: aug {self.pipeline}, {self.sched}, "
            f"{plural(self.epochs, 'epoch')}, batch {self.batch_size}, {self.optimizer} lr {self.lr:g} wd {self.weight_decay:g}, "
            f"TTA {self.tta_key}, seed {self.seed}"
        )


# --- field metadata -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpecField:
    """One RunSpec field as the CLI and the sweep files see it."""

    name: str
    kind: type  # bool, int, float, str, tuple (the pipeline) or dict (aug_params)
    default: Any
    help: str
    flag: str
    axis: bool
    cli: bool
    registry: str | None
    cli_type: type | None = None

    @property
    def aliases(self) -> tuple[str, ...]:
        """Other spellings accepted as keys in sweep and config files (the flag without dashes)."""
        key = self.flag.removeprefix("--").replace("-", "_")
        return (key,) if key != self.name else ()


def current_spec_class() -> type[RunSpec]:
    """``RunSpec`` as this module holds it now (tests may replace it with an extended class)."""
    return sys.modules[__name__].RunSpec


def spec_fields() -> list[SpecField]:
    """Every RunSpec field with its CLI metadata, in declaration order."""
    out = []
    for f in dataclasses.fields(current_spec_class()):
        meta = f.metadata.get("cifarbudget", {})
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:  # every RunSpec field has a default
            raise TypeError(f"RunSpec field {f.name!r} has no default")
        kind = dict if isinstance(default, dict) else tuple if isinstance(default, tuple) else type(default)
        out.append(
            SpecField(
                name=f.name,
                kind=kind,
                default=default,
                help=meta.get("help", f.name.replace("_", " ").capitalize() + "."),
                flag=meta.get("flag") or "--" + f.name.replace("_", "-"),
                axis=meta.get("axis", True),
                cli=meta.get("cli", True),
                registry=meta.get("registry"),
                cli_type=meta.get("cli_type"),
            )
        )
    return out


def field_for_key(raw: str, *, where: str, allowed: Iterable[str] | None = None) -> SpecField:
    """The field a sweep/config key names (``lr``, ``weight_decay``, ``wd``, ``aug``, ``warmup-epochs``).

    Unknown keys raise a one-line error with the closest known keys.
    """
    key = str(raw).strip().replace("-", "_")
    by_key: dict[str, SpecField] = {}
    for f in spec_fields():
        if allowed is None or f.name in allowed:
            by_key[f.name] = f
            for alias in f.aliases:
                by_key.setdefault(alias, f)
    if key in by_key:
        return by_key[key]
    raise RunError(f"unknown key {raw!r} in {where}.{_suggest(key, list(by_key))}")


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else f" Known keys: {', '.join(sorted(known))}."


# --- values ---------------------------------------------------------------------------------------
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a name", dict: "a table"}


def coerce(name: str, value: Any) -> Any:
    """``value`` (a TOML value, a recipe value or a command-line string) as the type of field ``name``."""
    spec_field = next(f for f in spec_fields() if f.name == name)
    kind = spec_field.kind
    if kind is tuple:
        return parse_pipeline(value)
    if name == "budget":
        from cifarbudget.budget import parse_budget

        return parse_budget(value)
    if name == "compute_budget":
        from cifarbudget.budget import is_zero, parse_compute

        return 0 if is_zero(value) else parse_compute(value)  # 0, 0T, 0.0: no compute budget
    text = value.strip() if isinstance(value, str) else value
    out: Any
    if kind is bool:
        out = _as_bool(text)
    elif kind in (int, float):
        out = _as_number(text, kind)
    elif kind is str:
        out = text if isinstance(text, str) and text else None
    else:
        out = text if isinstance(text, dict) else None
    if out is None:
        raise RunError(f"{name}: {value!r} is not {_EXPECTED.get(kind, kind.__name__)}")
    if name == "aug_params":  # one table of parameters per augmentation
        for aug, params in out.items():
            if not isinstance(params, dict):
                raise RunError(
                    f"aug_params.{aug}: {params!r} is not a table of the augmentation's parameters "
                    f"(KEY = VALUE, e.g. aug_params.{aug}.p = 0.5)"
                )
    return out


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    return None


def _as_number(value: Any, kind: type) -> int | float | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            return kind(value)
    except ValueError:
        return None
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is int and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        return int(value)
    return None


def parse_pipeline(value: Any) -> tuple[str, ...]:
    """One augmentation pipeline, in the one syntax every command accepts and the leaderboard prints.

    ``"crop-flip+cutmix"``, ``"cutmix"`` or a list of names (each of which may itself be
    ``a+b``); crop-flip is inserted first when missing (the base the others add to); ``"none"``
    alone is the empty pipeline. A comma is refused: in a sweep it would be ambiguous (two
    pipelines or one?), so pipelines are always joined with ``+``.
    """
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(n, str) for n in items):
        raise RunError(f"aug {value!r}: expected a name, 'a+b+c', or a list of names")
    names: list[str] = []
    for item in items:
        if "," in item:
            raise RunError(
                f"aug {item!r}: join the augmentations of one pipeline with '+' (cutmix+blur); "
                "in a sweep, repeat --aug (or list more values) for more pipelines"
            )
        parts = [n.strip() for n in item.split("+")]
        if any(not n for n in parts):
            raise RunError(f"aug {item!r}: empty augmentation name")
        names.extend(parts)
    if names == ["none"] or not names:
        return ()
    if "none" in names:
        raise RunError("aug 'none' cannot be combined with other augmentations")
    if "crop-flip" not in names:
        names.insert(0, "crop-flip")
    return tuple(dict.fromkeys(names))


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _value(raw: str) -> Any:
    """A command-line parameter value: JSON where it parses (numbers, lists), ``true``/``false`` in
    any case (``False`` is not the text "False", which a factory would read as true), a decimal
    JSON does not take (``.5``, ``1.``); else text."""
    text = raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return float(text) if _DECIMAL.fullmatch(text) else raw


def parse_params(items: Iterable[str], what: str = "--aug-param") -> dict[str, dict[str, Any]]:
    """``["cutmix.p=0.5", "blur.sigma=[0.1, 1.5]"]`` -> ``{"cutmix": {"p": 0.5}, "blur": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        name, dot, param = key.strip().rpartition(".")
        if not sep or not dot or not name or not param:
            raise RunError(f"{what} {item!r} is not NAME.KEY=VALUE (e.g. cutmix.p=0.5)")
        inner = out.setdefault(name, {})
        if param in inner:
            raise RunError(
                f"{what} {name}.{param} is given twice ({inner[param]!r}, then {raw!r}): give it once"
            )
        inner[param] = _value(raw)
    return out


def parse_flat_params(items: Iterable[str], what: str) -> dict[str, Any]:
    """``["k=5", "alpha=0.5"]`` -> ``{"k": 5, "alpha": 0.5}`` (values as in :func:`parse_params`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RunError(f"{what} {item!r} is not KEY=VALUE")
        if key.strip() in out:
            raise RunError(
                f"{what} {key.strip()} is given twice ({out[key.strip()]!r}, then {raw!r}): give it once"
            )
        out[key.strip()] = _value(raw)
    return out


# --- resolution -----------------------------------------------------------------------------------
def _merged(field_name: str, base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe's parameters with the given ones set over them, key by key (``aug_params``: per
    augmentation, then per key), so ``--aug-param crop-flip.flip=false`` keeps the recipe's padding."""
    merged = dict(base)
    for key, value in given.items():
        inner = merged.get(key)
        if field_name == "aug_params" and isinstance(inner, Mapping) and isinstance(value, Mapping):
            merged[key] = {**inner, **value}
        else:
            merged[key] = value
    return merged


def merge_options(base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over ``base`` (``None`` = not given); parameter fields merge key by key."""
    known = {f.name: f for f in spec_fields()}
    values = dict(base)
    for key, value in given.items():
        if value is None:
            continue
        field_ = known.get(key)
        mergeable = field_ is not None and field_.kind is dict
        if mergeable and isinstance(values.get(key), Mapping) and isinstance(value, Mapping):
            value = _merged(key, values[key], value)
        values[key] = value
    return values


def resolve_spec(
    model: str | None = None,
    *,
    recipe: str | None = None,
    data_dir: str | Path | None = None,
    **options: Any,
) -> RunSpec:
    """Merge defaults <- recipe <- explicit options (``None`` means "not given") into a checked RunSpec.

    Parameter fields (``aug_params``, ``opt_params``, ...) merge key by key: an option sets its
    keys over the recipe's and keeps the others. A recipe's parameters belong to its components:
    when an option names another model, optimizer, schedule, loss, TTA policy or pipeline, the
    recipe's parameters that the new component does not take are dropped (and logged), so
    ``--recipe speedrun-cpu-v3 --optimizer sgd`` keeps ``bn_bias_lr_scale`` and drops ``muon_lr``.

    Every value is coerced to its field's type (so strings from the command line or a file work)
    and every name is looked up in its registry (unknown names fail here, with suggestions). The
    spec's ``data_id`` is computed from the dataset in ``data_dir`` (default: the data folder)
    unless given.
    """
    known = {f.name: f for f in spec_fields()}
    values: dict[str, Any] = {}
    if recipe is not None:
        from cifarbudget.plugins import get_registry

        preset = get_registry("recipes").create(recipe)
        unknown = set(preset) - set(known)
        if unknown:
            raise RunError(f"recipe {recipe!r} sets unknown option(s): {', '.join(sorted(unknown))}")
        values.update(preset)
        chosen = {k: v for k, v in options.items() if v is not None}
        if model is not None:
            chosen["model"] = model
        values.update(inherited_params(f"recipe {recipe}", preset, chosen))
    if model is not None:
        values["model"] = model
    unknown = set(options) - set(known)
    if unknown:
        raise RunError(f"unknown run option(s): {', '.join(sorted(unknown))}")
    values = merge_options(values, options)  # one --opt-param keeps the recipe's others
    if "model" not in values:
        raise RunError(
            "no model given: pass a MODEL argument or --recipe NAME (see 'cifarbudget list recipes')"
        )
    values = {k: coerce(k, v) for k, v in values.items()}
    spec = current_spec_class()(**values)
    check_names(spec)
    if not spec.data_id:
        from cifarbudget.data.core import default_data_dir
        from cifarbudget.identity import data_id

        root = Path(data_dir).expanduser() if data_dir else default_data_dir()
        spec = dataclasses.replace(spec, data_id=data_id(spec.dataset, root))
    return spec


# (name field, registry, parameter field) of the components whose parameters a recipe may set
COMPONENTS = (
    ("model", "models", "model_params"),
    ("optimizer", "optimizers", "opt_params"),
    ("sched", "schedulers", "sched_params"),
    ("loss", "losses", "loss_params"),
    ("tta", "tta", "tta_params"),
)
_LABELS = {
    "models": "model",
    "optimizers": "optimizer",
    "schedulers": "scheduler",
    "losses": "loss",
    "tta": "TTA policy",
}


def inherited_params(source: str, preset: Mapping[str, Any], chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter fields of ``preset`` (a recipe's options, or a recorded run's for ``run
    --from``), less what the components ``chosen`` instead of the preset's do not take, and less
    the ``aug_params`` of augmentations the chosen pipeline drops; each left out once, with a note
    naming ``source`` ("recipe speedrun-cpu", "run RUN"). See :func:`resolve_spec`."""
    from cifarbudget.plugins import get_registry
    from cifarbudget.registry import accepted_params

    out: dict[str, Any] = {}
    for name_field, kind, params_field in COMPONENTS:
        new, params = chosen.get(name_field), preset.get(params_field)
        if new is None or new == preset.get(name_field) or not isinstance(params, Mapping) or not params:
            continue
        registry = get_registry(kind)
        if new not in registry:
            continue  # an unknown name fails in check_names, with suggestions
        accepted = accepted_params(registry.get(new).factory)
        kept = {k: v for k, v in params.items() if accepted is None or k in accepted}
        if len(kept) < len(params):
            left_out = ", ".join(sorted(set(params) - set(kept)))
            _say_once(
                f"{source}: {_LABELS[kind]} {new!r} does not take {left_out} "
                f"(the {source.split()[0]}'s {params_field}); not used"
            )
        out[params_field] = kept
    params = preset.get("aug_params")
    if chosen.get("augs") is not None and isinstance(params, Mapping) and params:
        pipeline = parse_pipeline(chosen["augs"])
        kept = {k: v for k, v in params.items() if k in pipeline}
        if len(kept) < len(params):
            left_out = ", ".join(sorted(set(params) - set(kept)))
            _say_once(
                f"{source}: the pipeline {'+'.join(pipeline) or 'none'} has no {left_out} "
                f"(the {source.split()[0]}'s aug_params); not used"
            )
        out["aug_params"] = kept
    return out


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """Log ``message`` once per process (a sweep resolves the same override at every grid point)."""
    if message not in _SAID:
        _SAID.add(message)
        log.info("%s", message)


def check_names(spec: RunSpec) -> None:
    """Raise an unknown-name error (with suggestions) for any name no plugin provides."""
    from cifarbudget.plugins import get_registry

    for f in spec_fields():
        if f.registry is None:
            continue
        value = getattr(spec, f.name)
        for name in value if isinstance(value, tuple) else (value,):
            get_registry(f.registry).get(name)


def spec_values(spec: RunSpec | Mapping[str, Any]) -> dict[str, Any]:
    """A spec (or its dict) as plain field values, in declaration order."""
    data = spec.to_dict() if isinstance(spec, RunSpec) else dict(spec)
    return {f.name: data[f.name] for f in spec_fields() if f.name in data}


def command_args(values: Mapping[str, Any], *, sweep: bool) -> list[str]:
    """The ``run``/``sweep`` arguments that reproduce a spec: every CLI field that differs from its
    default (the model as ``MODEL`` for run, ``--model`` for sweep; the seed is left to the caller)."""
    args: list[str] = []
    for f in spec_fields():
        if not f.cli or f.name == "seed" or f.name not in values:
            continue
        value = values[f.name]
        if f.kind is tuple:
            value = tuple(value)
        if f.name == "model":
            args += ["--model", str(value)] if sweep else [str(value)]
            continue
        if value == f.default:
            continue
        if f.kind is bool:
            name = f.flag.removeprefix("--")
            args.append(f.flag if value else f"--no-{name}")
        elif f.kind is tuple:
            args += [f.flag, "+".join(value) or "none"]
        elif f.kind is dict:
            nested = f.name == "aug_params"
            items = (
                [(f"{a}.{k}", v) for a, ps in sorted(value.items()) for k, v in sorted(ps.items())]
                if nested
                else sorted(value.items())
            )
            for key, v in items:
                args += [f.flag, f"{key}={json.dumps(v, separators=(',', ':'))}"]
        elif f.name == "budget":
            args += [f.flag, str(value)]
        else:
            args += [f.flag, f"{value:.10g}" if isinstance(value, float) else str(value)]
    return args


def command_line(
    values: Mapping[str, Any], *, sweep: bool, seeds: Iterable[int] = (), data_dir: str | None = None
) -> str:
    """``cifarbudget run|sweep ...``: a shell-quoted command that reproduces a spec (for the seeds given)."""
    import shlex

    args = ["cifarbudget", "sweep" if sweep else "run", *command_args(values, sweep=sweep)]
    for seed in seeds:
        args += ["--seed", str(seed)]
    if data_dir:
        args += ["--data-dir", data_dir]
    return " ".join(shlex.quote(a) for a in args)

"""What a run is: the resolved training configuration that its id hashes.

A run's identity is everything that changes what is trained, and nothing else:

- every :class:`~cifarbudget.spec.RunSpec` field except those that only evaluate or judge a
  trained model (``tta``: evaluation only; ``budget``, ``compute_budget`` and ``allow_over_budget``: verdicts);
- every component with its *resolved* parameters: the model, each augmentation, the schedule,
  the optimizer and the loss, with every keyword default of its registered factory filled in
  (so changing a component's default changes the id: old runs are not taken for new ones) and the
  values bound by the registration (``resnet20`` is ``cifar_resnet`` with ``depth=20``);
- the data: ``spec.data_id``, the dataset's content fingerprint and split sizes
  (:func:`data_id`), so runs on different image folders never pool.

A component may name options that leave its identity while they have a given value
(``identity_neutral = {"option": value}`` on the factory or class): an option added after runs
were recorded, whose value there builds exactly what was built before, so the recorded runs keep
their ids. A parameter that names a finished run folder (a distillation teacher) is replaced by
that run's id: the identity does not depend on where a folder lives. ``run_id`` is
``<model>-<dataset>-e<epochs>-s<seed>-<12 hex digits>``; ``config_id`` hashes the same identity
without the seed (runs that differ only in their seed are one configuration on a leaderboard).
:data:`IDENTITY_VERSION` is part of the hash: changing what goes into identities on purpose bumps
it (and the result schema), documented in docs/results.md.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The functions below take a cifarbudget.spec.RunSpec (typed ``Any``: spec imports this module).
RunSpec = Any

IDENTITY_VERSION = 2
# RunSpec fields that do not change training: they never enter the identity.
NOT_TRAINING = ("tta", "tta_params", "budget", "compute_budget", "allow_over_budget")
# Parameters the run itself passes to a component's factory (from other spec fields or the data).
RUN_SUPPLIED = {
    "models": {"num_classes"},
    "schedulers": {"optimizer", "epochs", "steps_per_epoch", "warmup_epochs"},
    "optimizers": {"model", "lr", "momentum", "weight_decay", "nesterov"},
    "losses": set(),
    "augmentations": set(),
    "tta": set(),
}
# How many of those the run passes by position, first (whatever the factory calls them): a
# scheduler's optimizer, an optimizer's model.
RUN_POSITIONAL = {"schedulers": 1, "optimizers": 1}
# Spec fields folded into the resolved components (their raw values are not hashed twice).
COMPONENT_FIELDS = ("model_params", "aug_params", "sched_params", "opt_params", "loss_params")


def canonical(value: Any) -> Any:
    """``value`` as plain JSON (tuples as lists, paths and other objects as their text)."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def digest(obj: Any, n: int = 12) -> str:
    text = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _run_reference(value: Any) -> Any:
    """A path to a finished run folder (or its result.json) becomes ``{"run": <run id>}``."""
    if not isinstance(value, str | Path) or not str(value):
        return value
    path = Path(value).expanduser()
    record = path if path.name == "result.json" else path / "result.json"
    try:
        if record.is_file():
            return {"run": json.loads(record.read_text())["run_id"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return value


def component_params(kind: str, name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a component is built with: its factory's keyword defaults, the values its
    registration binds, then ``params``; run folders named by id (see the module docstring)."""
    from cifarbudget.plugins import get_registry

    factory = get_registry(kind).get(name).factory
    target = factory.resolve() if hasattr(factory, "resolve") else factory
    bound_args = tuple(getattr(factory, "args", ()))
    bound_kwargs = dict(getattr(factory, "kwargs", {}))
    resolved: dict[str, Any] = {}
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # no introspectable signature: only what is given
        signature = None
    if signature is not None:
        skip = RUN_SUPPLIED.get(kind, set())
        try:
            bound = signature.bind_partial(*bound_args, **bound_kwargs).arguments
        except TypeError:
            bound = dict(bound_kwargs)
        for pname, p in signature.parameters.items():
            if pname in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if pname in bound:
                resolved[pname] = bound[pname]
            elif p.default is not p.empty:
                resolved[pname] = p.default
    resolved.update(params or {})
    out = {k: canonical(_run_reference(v)) for k, v in resolved.items()}
    # options added after runs were recorded leave the identity while they keep the old behaviour
    for key, value in dict(getattr(target, "identity_neutral", None) or {}).items():
        if key in out and out[key] == canonical(value):
            del out[key]
    return out


def tta_key(name: str, params: Mapping[str, Any] | None = None) -> str:
    """How results key a TTA evaluation: the policy's name, followed by the parameters that differ
    from its defaults, sorted, values as JSON: ``multicrop``, ``selective(fraction=0.5)``,
    ``selective(fraction=0.5,score="margin")``. A parameter given at its default value leaves the
    key as the bare name, so ``--tta-param fraction=0.2`` and no parameter share one evaluation."""
    if not params or name == "none":
        return name
    defaults = component_params("tta", name)
    given = component_params("tta", name, params)
    changed = {k: v for k, v in given.items() if k not in defaults or defaults[k] != v}
    return format_tta_key(name, changed)


def format_tta_key(name: str, params: Mapping[str, Any]) -> str:
    """``name(k=v,...)`` for the given parameters, sorted, values as JSON; the bare name for none.
    :func:`tta_key` passes only those that differ from the policy's defaults."""
    if not params:
        return name
    text = ",".join(
        f"{k}={json.dumps(v, sort_keys=True, separators=(',', ':'))}" for k, v in sorted(params.items())
    )
    return f"{name}({text})"


def components(spec: RunSpec) -> dict[str, Any]:
    """Every component of the run with its resolved parameters."""
    return {
        "model": {"name": spec.model, "params": component_params("models", spec.model, spec.model_params)},
        "augs": [
            {"name": aug, "params": component_params("augmentations", aug, spec.aug_params.get(aug, {}))}
            for aug in spec.augs
        ],
        "sched": {
            "name": spec.sched,
            "params": component_params("schedulers", spec.sched, spec.sched_params),
        },
        "optimizer": {
            "name": spec.optimizer,
            "params": component_params("optimizers", spec.optimizer, spec.opt_params),
        },
        "loss": {"name": spec.loss, "params": component_params("losses", spec.loss, spec.loss_params)},
    }


def training_identity(spec: RunSpec) -> dict[str, Any]:
    """The canonical dict that the run id hashes (see the module docstring)."""
    values = spec.to_dict()
    fields = {k: v for k, v in values.items() if k not in NOT_TRAINING and k not in COMPONENT_FIELDS}
    return canonical({"v": IDENTITY_VERSION, **fields, "components": components(spec)})


def run_id(spec: RunSpec) -> str:
    identity = training_identity(spec)
    return f"{spec.model}-{spec.dataset}-e{spec.epochs}-s{spec.seed}-{digest(identity)}"


def config_id(spec: RunSpec) -> str:
    identity = training_identity(spec)
    identity.pop("seed", None)
    return digest(identity, 10)


def data_id(dataset: str, root: Path | str) -> str:
    """The data a run trains on: a short hash of the dataset's name, split sizes and content
    fingerprint (its ``metadata(root)``); a dataset without metadata is named by its data folder.
    """
    from cifarbudget.plugins import get_registry

    factory = get_registry("datasets").get(dataset).factory
    describe = getattr(factory, "metadata", None)
    meta = describe(Path(root)) if callable(describe) else None
    if not meta:
        return digest({"dataset": dataset, "root": str(Path(root).expanduser().resolve())}, 16)
    keep = {k: meta.get(k) for k in ("n_train", "n_test", "fingerprint")}
    return digest({"dataset": dataset, **keep}, 16)

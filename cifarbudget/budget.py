"""The parameter budget and the compute cost of a model.

Parameters are the model's unique trainable tensors (``requires_grad``; a tensor shared by two
modules, as in weight tying, counts once; a pruned layer counts its whole ``weight_orig``, since
every entry of it is trained), cross-checked with torchinfo: a disagreement is recorded and
warned about. Multiply-accumulates (MACs) come from fvcore, which counts one fused multiply-add
as one "flop", so its conv + linear totals are MACs; they are cross-checked with torch's own
flop counter (``torch.utils.flop_counter``, FLOPs / 2). Operators fvcore cannot count are listed
in the report, and those that may hide MACs (attention, unknown matrix products) are warned
about: never a silent zero. The budget is strict: a model is within a budget of 5M when it has
fewer than 5,000,000 trainable parameters.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from cifarbudget.errors import BudgetError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_BUDGET = 5_000_000
INPUT_SHAPE = (1, 3, 32, 32)
# fvcore operator names that are convolutions or matrix products: the MACs that matter.
MAC_OPERATORS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum", "mm"})

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e\+?(\d+))?\s*([kmgtp]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def is_zero(value: str | int | float) -> bool:
    """Whether ``value`` spells zero (``0``, ``0.0``, ``0T``): for a compute budget, "none"."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    match = _BUDGET.match(str(value))
    return match is not None and Decimal(match.group(1)) == 0


def parse_budget(value: str | int | float, *, what: str = "budget", unit: str = "parameter count") -> int:
    """Parse ``5M``, ``4.5M``, ``500k``, ``5000000`` (or an int) into a parameter count.

    Suffixes k, M, G, T, P are powers of 1000 (``30T`` MACs is a compute budget). Decimal
    arithmetic keeps ``4.1M`` exactly 4,100,000 (a float product would be 4099999.99...).
    """
    if isinstance(value, bool):
        raise BudgetError(f"invalid {what} {value!r}")
    try:
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        else:
            match = _BUDGET.match(str(value))
            if not match:
                example = "30T, 1.5P or 3e13" if what != "budget" else "5M, 4.5M, 500k or 5000000"
                raise BudgetError(f"invalid {what} {value!r}: use a {unit} such as {example}")
            digits, exponent, suffix = match.groups()
            number = Decimal(digits) * Decimal(10) ** min(int(exponent or 0), 40) * _SUFFIX[suffix.lower()]
            if number > 10**21:  # 1e18P was accepted where 1e30 was not: the size, suffix included
                raise BudgetError(f"invalid {what} {value!r}: it is too large")
        if not number.is_finite():
            raise BudgetError(f"invalid {what} {value!r}: it must be a finite number")
    except InvalidOperation:
        raise BudgetError(f"invalid {what} {value!r}") from None
    if number <= 0 or number != number.to_integral_value():
        raise BudgetError(
            f"invalid {what} {value!r}: it must be a positive whole number of {unit.split()[0]}s"
        )
    return int(number)


def parse_compute(value: str | int | float) -> int:
    """A training-compute budget in multiply-accumulates: ``30T``, ``1.5P``, ``3e13``."""
    return parse_budget(value, what="compute budget", unit="MAC count")


def format_macs(n: float) -> str:
    """``2.9e13 -> '29.0T'``: compute in MACs with a T/P suffix for training-sized numbers."""
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return f"{n:.0f}"


def format_count(n: float) -> str:
    """``4754218 -> '4.75M'``, ``271418368 -> '271.42M'``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(int(n))


@dataclass
class BudgetReport:
    """Size and cost of one model, and whether it fits the budget."""

    model: str
    params: int  # trainable parameters
    total_params: int
    macs: int  # conv + linear multiply-accumulates for one 3x32x32 image
    budget: int
    macs_by_operator: dict[str, int] = field(default_factory=dict)  # fvcore's totals, all operators
    num_classes: int = 10  # the classifier head the model was counted with
    params_torchinfo: int | None = None  # torchinfo's trainable count, the cross-check
    macs_torch: int | None = None  # torch.utils.flop_counter's FLOPs / 2, the cross-check
    unsupported_ops: dict[str, int] = field(default_factory=dict)  # operators fvcore did not count
    notes: list[str] = field(default_factory=list)  # disagreements and uncounted operators, one line each

    @property
    def within_budget(self) -> bool:
        return self.params < self.budget

    @property
    def reason(self) -> str:
        """One line that says why the model passes or fails."""
        verb = "is within" if self.within_budget else "is over"
        relation = "<" if self.within_budget else ">="
        return (
            f"{self.model}: {self.params:,} trainable parameters {relation} budget {self.budget:,} "
            f"({verb} budget), {format_count(self.macs)} MACs"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["within_budget"] = self.within_budget
        return d


# Operators fvcore does not count that carry no multiply-accumulates worth counting (elementwise,
# pooling, shape): anything else it skips may hide MACs and is warned about.
NO_MAC_OPERATORS = frozenset(
    {
        "add", "add_", "sub", "mul", "mul_", "div", "neg", "relu", "relu_", "gelu", "silu", "sigmoid",
        "tanh", "hardswish", "hardsigmoid", "leaky_relu", "elu", "softmax", "log_softmax", "pad",
        "constant_pad_nd", "max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool2d",
        "cat", "flatten", "view", "reshape", "dropout", "feature_dropout", "clone", "clamp", "mean",
        "sum", "flip", "bernoulli_", "div_", "rsub", "expand_as", "repeat", "permute", "transpose",
        "contiguous", "slice", "select", "index", "unsqueeze", "squeeze", "zeros_like", "ones_like",
        "empty_like", "floor_divide", "pow", "sqrt", "rsqrt", "exp", "hardtanh", "relu6", "mish",
        "bernoulli", "abs", "max", "min", "stack", "chunk", "split", "topk", "sort", "gather",
    }
)  # fmt: skip


def _counts_no_macs(op: str) -> bool:
    """An operator without multiply-accumulates (its in-place form ``silu_`` included)."""
    name = op.removeprefix("aten::")
    return name in NO_MAC_OPERATORS or name.rstrip("_") in NO_MAC_OPERATORS


def unique_trainable_parameters(model: nn.Module) -> int:
    """Trainable parameters, each tensor once even when several modules share it (or views of it)."""
    seen: set[tuple[int, int | torch.SymInt, tuple[int, ...], tuple[int, ...]]] = set()
    total = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key = (p.untyped_storage().data_ptr(), p.storage_offset(), tuple(p.shape), tuple(p.stride()))
        if key not in seen:
            seen.add(key)
            total += p.numel()
    return total


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, counted by torchinfo (the cross-check of our own count)."""
    from torchinfo import summary

    stats = summary(model, input_size=INPUT_SHAPE, verbose=0, device="cpu", mode="eval")
    return int(stats.trainable_params), int(stats.total_params)


def count_macs(model: nn.Module) -> tuple[int, dict[str, int]]:
    """(conv + linear MACs, fvcore's by-operator totals) for one 3x32x32 image."""
    macs, by_op, _ = _fvcore_macs(model)
    return macs, by_op


def count_macs_at(model: nn.Module, size: int) -> int:
    """Conv + linear MACs (fvcore) of one 3 x ``size`` x ``size`` image: the cost of an epoch that
    trains on resized images (:mod:`cifarbudget.augment.resize`)."""
    return _fvcore_macs(model, (1, 3, size, size))[0]


def _fvcore_macs(
    model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE
) -> tuple[int, dict[str, int], dict[str, int]]:
    with warnings.catch_warnings():  # fvcore's import scripts a function; torch warns on that
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(input_shape))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_op = {k: int(v) for k, v in sorted(analysis.by_operator().items())}
            unsupported = {k: int(v) for k, v in sorted(analysis.unsupported_ops().items())}
    finally:
        model.train(was_training)
    return sum(v for k, v in by_op.items() if k in MAC_OPERATORS), by_op, unsupported


def count_macs_torch(model: nn.Module) -> int:
    """MACs of one 3x32x32 image by torch's own counter (``FlopCounterMode`` FLOPs / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(INPUT_SHAPE))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def check_forward(
    model: nn.Module, name: str, params: dict[str, Any] | None = None, *, num_classes: int | None = None
) -> None:
    """Run ``model`` once on a zero image, as the counters will: a model that cannot (a plugin's
    broken forward, or ``--model-param`` values it builds but cannot run, such as ``stem=0``) is
    one :class:`~cifarbudget.errors.RunError` line with the model's own message, instead of a
    counter's traceback. With ``num_classes`` (a registered model built for that many classes) its
    output must be the logits ``(1, num_classes)``: a wrong head is found here, not mid-training.
    The model is left in the mode it was in."""
    import torch

    from cifarbudget.errors import RunError, describe

    given = f" ({', '.join(f'{k}={v!r}' for k, v in params.items())})" if params else ""
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(INPUT_SHAPE))
    except Exception as exc:  # the model's own code: whatever it raises, say it in one line
        shape = "x".join(map(str, INPUT_SHAPE[1:]))
        reason = describe(exc, with_type=False)
        raise RunError(f"model {name!r}{given} cannot run on a {shape} image: {reason}") from exc
    finally:
        model.train(was_training)
    if num_classes is not None:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        if got != (INPUT_SHAPE[0], num_classes):
            raise RunError(
                f"model {name!r}{given} built for {num_classes} classes returns {got} for a batch of "
                f"{INPUT_SHAPE[0]}, not the logits ({INPUT_SHAPE[0]}, {num_classes})"
            )


def check_budget(
    model_or_name: nn.Module | str,
    budget: str | int | float = DEFAULT_BUDGET,
    *,
    num_classes: int = 10,
    name: str | None = None,
    model_params: dict[str, Any] | None = None,
) -> BudgetReport:
    """Count a model's parameters and MACs and judge it against ``budget`` (default 5M).

    ``model_or_name`` is a module or a registered model name. The model is run on CPU on one
    zero image; nothing is trained.
    """
    from cifarbudget.api import check_model_params, create_model

    limit = parse_budget(budget)
    if isinstance(model_or_name, str):
        name = name or model_or_name
        params = dict(model_params or {})
        check_model_params(model_or_name, params)  # before the call: num_classes would clash there
        model = create_model(model_or_name, num_classes=num_classes, **params)
    else:
        model = model_or_name
        name = name or type(model).__name__
    model = model.to("cpu")
    built = isinstance(model_or_name, str)  # built here, for num_classes: its head must have them
    check_forward(model, name, model_params if built else None, num_classes=num_classes if built else None)
    trainable = unique_trainable_parameters(model)
    torchinfo_trainable, total = count_parameters(model)
    macs, by_op, unsupported = _fvcore_macs(model)
    macs_torch = count_macs_torch(model)
    notes = []
    if torchinfo_trainable != trainable:
        notes.append(
            f"torchinfo counts {torchinfo_trainable:,} trainable parameters, {trainable:,} unique trainable "
            "tensors' entries (shared tensors once, pruned layers in full); the budget uses the latter"
        )
    hidden = {op: n for op, n in unsupported.items() if not _counts_no_macs(op)}
    if hidden:
        ops = ", ".join(f"{op} ({n} call{'s' if n > 1 else ''})" for op, n in hidden.items())
        notes.append(f"fvcore cannot count {ops}: their MACs are not in the total")
    if macs and abs(macs_torch - macs) > 0.01 * macs:
        notes.append(f"torch's flop counter gives {macs_torch:,} MACs, fvcore {macs:,}: the counts disagree")
    report = BudgetReport(
        name,
        trainable,
        total,
        macs,
        limit,
        by_op,
        num_classes,
        torchinfo_trainable,
        macs_torch,
        unsupported,
        notes,
    )
    for note in notes:
        log.warning("%s: %s", name, note)
    return report

"""The parameter budget and the compute cost of a model.

Trainable parameters come from torchinfo, multiply-accumulates (MACs) from fvcore: fvcore counts
one fused multiply-add as one "flop", so its conv + linear totals are MACs. The budget is strict:
a model is within a budget of 5M when it has fewer than 5,000,000 trainable parameters.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from cifarbudget.errors import BudgetError

if TYPE_CHECKING:
    from torch import nn

DEFAULT_BUDGET = 5_000_000
INPUT_SHAPE = (1, 3, 32, 32)
# fvcore operator names that are convolutions or matrix products: the MACs that matter.
MAC_OPERATORS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum", "mm"})

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e(\d+))?\s*([kmg]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_budget(value: str | int | float) -> int:
    """Parse ``5M``, ``4.5M``, ``500k``, ``5000000`` (or an int) into a parameter count.

    Decimal arithmetic keeps ``4.1M`` exactly 4,100,000 (a float product would be 4099999.99...).
    """
    if isinstance(value, bool):
        raise BudgetError(f"invalid budget {value!r}")
    try:
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        else:
            match = _BUDGET.match(str(value))
            if not match:
                raise BudgetError(
                    f"invalid budget {value!r}: use a parameter count such as 5M, 4.5M, 500k or 5000000"
                )
            digits, exponent, suffix = match.groups()
            if exponent and int(exponent) > 15:
                raise BudgetError(f"invalid budget {value!r}: it is too large")
            number = Decimal(digits) * Decimal(10) ** int(exponent or 0) * _SUFFIX[suffix.lower()]
        if not number.is_finite():
            raise BudgetError(f"invalid budget {value!r}: it must be a finite number")
    except InvalidOperation:
        raise BudgetError(f"invalid budget {value!r}") from None
    if number <= 0 or number != number.to_integral_value():
        raise BudgetError(f"invalid budget {value!r}: it must be a positive whole number of parameters")
    return int(number)


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


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, counted by torchinfo."""
    from torchinfo import summary

    stats = summary(model, input_size=INPUT_SHAPE, verbose=0, device="cpu", mode="eval")
    return int(stats.trainable_params), int(stats.total_params)


def count_macs(model: nn.Module) -> tuple[int, dict[str, int]]:
    """(conv + linear MACs, fvcore's by-operator totals) for one 3x32x32 image."""
    with warnings.catch_warnings():  # fvcore's import scripts a function; torch warns on that
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(INPUT_SHAPE))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_op = {k: int(v) for k, v in sorted(analysis.by_operator().items())}
    finally:
        model.train(was_training)
    return sum(v for k, v in by_op.items() if k in MAC_OPERATORS), by_op


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
    from cifarbudget.api import create_model

    limit = parse_budget(budget)
    if isinstance(model_or_name, str):
        name = name or model_or_name
        model = create_model(model_or_name, num_classes=num_classes, **(model_params or {}))
    else:
        model = model_or_name
        name = name or type(model).__name__
    model = model.to("cpu")
    trainable, total = count_parameters(model)
    macs, by_op = count_macs(model)
    return BudgetReport(name, trainable, total, macs, limit, by_op, num_classes)

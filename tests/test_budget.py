"""The parameter budget: parsing, the strict verdict, parameter and MAC counts pinned to real numbers.

MACs come from fvcore (conv + linear); they are cross-checked here against PyTorch's own
``torch.utils.flop_counter.FlopCounterMode``, which counts 2 flops per multiply-accumulate of
convolutions and matrix products only.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cifarbudget
from cifarbudget.budget import (
    DEFAULT_BUDGET,
    MAC_OPERATORS,
    BudgetReport,
    check_budget,
    count_macs,
    count_parameters,
    format_count,
    parse_budget,
)
from cifarbudget.errors import BudgetError, UnknownNameError

pytestmark = pytest.mark.usefixtures("single_thread")


# --- parse_budget ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5M", 5_000_000),
        ("5m", 5_000_000),
        ("4.5M", 4_500_000),
        ("500k", 500_000),
        ("500K", 500_000),
        ("5000000", 5_000_000),
        ("5e6", 5_000_000),
        ("5E6", 5_000_000),
        ("1.5e6", 1_500_000),
        (" 5M ", 5_000_000),
        ("0.5M", 500_000),
        (".5M", 500_000),
        ("1G", 1_000_000_000),
        ("2.75M", 2_750_000),
        (5_000_000, 5_000_000),
        (1, 1),
        (5e6, 5_000_000),
    ],
)
def test_parse_budget(text: str | int | float, expected: int) -> None:
    result = parse_budget(text)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("5Q", "use a parameter count such as 5M, 4.5M, 500k or 5000000"),
        ("", "use a parameter count such as"),
        ("   ", "use a parameter count such as"),
        ("-1M", "use a parameter count such as"),
        ("abc", "use a parameter count such as"),
        ("5 million", "use a parameter count such as"),
        ("1.5", "it must be a positive whole number of parameters"),
        ("1.2345k", "it must be a positive whole number of parameters"),
        ("0", "it must be a positive whole number of parameters"),
        ("0M", "it must be a positive whole number of parameters"),
        (0, "it must be a positive whole number of parameters"),
        (-5, "it must be a positive whole number of parameters"),
        (2.5, "it must be a positive whole number of parameters"),
        (True, "invalid budget True"),
    ],
)
def test_parse_budget_rejects(bad: str | int | float, fragment: str) -> None:
    with pytest.raises(BudgetError) as info:
        parse_budget(bad)
    msg = str(info.value)
    assert msg.startswith(f"invalid budget {bad!r}")
    assert fragment in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("text", "expected"), [("4.1M", 4_100_000), ("1.001M", 1_001_000)])
def test_parse_budget_decimal_fractions(text: str, expected: int) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize("bad", ["1e400", float("inf"), float("nan")])
def test_parse_budget_overflow_is_a_budget_error(bad: str | float) -> None:
    with pytest.raises(BudgetError):
        parse_budget(bad)


# --- the verdict ----------------------------------------------------------------------------------
def _report(params: int, budget: int = DEFAULT_BUDGET, macs: int = 271_419_904) -> BudgetReport:
    return BudgetReport("net", params, params, macs, budget, {"conv": macs})


def test_budget_is_strict() -> None:
    assert _report(4_999_999).within_budget
    assert not _report(5_000_000).within_budget  # exactly the budget is over it
    assert not _report(5_000_001).within_budget


def test_reason_text() -> None:
    assert _report(4_754_218).reason == (
        "net: 4,754,218 trainable parameters < budget 5,000,000 (is within budget), 271.42M MACs"
    )
    assert _report(5_000_000).reason == (
        "net: 5,000,000 trainable parameters >= budget 5,000,000 (is over budget), 271.42M MACs"
    )


def test_report_to_dict() -> None:
    d = _report(4_754_218).to_dict()
    assert d == {
        "model": "net",
        "params": 4_754_218,
        "total_params": 4_754_218,
        "macs": 271_419_904,
        "budget": 5_000_000,
        "macs_by_operator": {"conv": 271_419_904},
        "num_classes": 10,
        "params_torchinfo": None,
        "macs_torch": None,
        "unsupported_ops": {},
        "notes": [],
        "within_budget": True,
    }


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (4_754_218, "4.75M"),
        (271_418_368, "271.42M"),
        (1_500, "1.50k"),
        (999, "999"),
        (2_000_000_000, "2.00G"),
    ],
)
def test_format_count(n: int, text: str) -> None:
    assert format_count(n) == text


def test_exactly_budget_params_module_is_over() -> None:
    model = nn.Sequential(nn.Conv2d(3, 250, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # 4 * 250 = 1,000
    assert check_budget(model, 1_000).within_budget is False
    assert check_budget(model, 1_001).within_budget is True
    assert check_budget(model, "1k").params == 1_000


# --- counting --------------------------------------------------------------------------------------
class _HalfFrozen(nn.Module):
    """A conv (448 trainable params) and a frozen linear head (10,250 params)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)  # 3*16*9 + 16 = 448
        self.head = nn.Linear(16 * 8 * 8, 10)  # 1024*10 + 10 = 10,250
        self.head.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.conv(x), 4)
        return self.head(x.flatten(1))


def test_trainable_vs_total_params_and_hand_counted_macs() -> None:
    report = check_budget(_HalfFrozen(), "500")
    assert report.model == "_HalfFrozen"
    assert (report.params, report.total_params) == (448, 448 + 10_250)
    assert report.within_budget  # frozen parameters do not count against the budget
    # conv: 16 out channels * 32*32 positions * 3*3*3 weights; linear: 1024 * 10 (bias adds are not MACs)
    assert report.macs == 16 * 32 * 32 * 27 + 1024 * 10
    assert report.macs_by_operator["conv"] == 442_368
    assert report.macs_by_operator["linear"] == 10_240


def test_check_budget_accepts_name_or_module(budget_report: Callable[[str], BudgetReport]) -> None:
    by_name = budget_report("resnet20")
    by_module = check_budget(cifarbudget.create_model("resnet20"), name="resnet20")
    assert by_name == by_module
    assert by_name.model == "resnet20" and by_name.budget == DEFAULT_BUDGET
    unnamed = check_budget(cifarbudget.create_model("airnet-small"), "300k")
    assert unnamed.model == "AirNet"  # a module without a name is reported under its class name
    assert (unnamed.params, unnamed.budget, unnamed.within_budget) == (292_688, 300_000, True)


def test_check_budget_unknown_name() -> None:
    with pytest.raises(UnknownNameError, match="resnet20"):
        check_budget("resnet2")


def test_check_budget_bad_budget_fails_before_building() -> None:
    with pytest.raises(BudgetError, match="invalid budget '5Q'"):
        check_budget("no-such-model", "5Q")  # the budget is parsed first


def test_check_budget_num_classes() -> None:
    report = check_budget("resnet20", num_classes=100)
    assert report.params == 269_722 + 64 * 90 + 90  # the head grows by 90 outputs


class BrokenForward(nn.Module):
    """A plugin's model whose forward fails on a CIFAR image (its linear layer expects 10 inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


def test_a_model_that_cannot_run_is_one_line_and_keeps_its_mode() -> None:
    from cifarbudget.budget import check_forward
    from cifarbudget.errors import RunError

    model = BrokenForward().train()
    with pytest.raises(RunError) as info:
        check_budget(model, name="broken")
    assert str(info.value) == (
        "model 'broken' cannot run on a 3x32x32 image: mat1 and mat2 shapes cannot be multiplied (1x3072 and 10x10)"
    )
    assert model.training
    working = cifarbudget.create_model("airnet-small").eval()
    check_forward(working, "airnet-small")
    assert not working.training


class SevenClasses(nn.Module):
    """A plugin's model that ignores ``num_classes``: its head has 7 outputs whatever it is asked."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 32 * 32, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


def test_a_registered_model_with_the_wrong_head_is_refused_by_check(invoke) -> None:  # type: ignore[no-untyped-def]
    """Found by `check` (and so before any data in `run`), not as a shape error mid-training."""
    plugin = types.ModuleType("seven")

    @cifarbudget.hookimpl
    def cifarbudget_register_models(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("seven-net", SevenClasses, description="a head of 7 for any num_classes")

    plugin.cifarbudget_register_models = cifarbudget_register_models  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("seven", plugin),))
    out = invoke(["check", "seven-net"])
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        "Error: model 'seven-net' built for 10 classes returns (1, 7) for a batch of 1, not the logits (1, 10)"
    )
    check_budget(SevenClasses())  # a model given as an object is counted as it is: its classes are its own


def test_count_macs_restores_training_mode() -> None:
    model = cifarbudget.create_model("airnet-small").train()
    count_macs(model)
    assert model.training
    model.eval()
    count_parameters(model)
    count_macs(model)
    assert not model.training


# --- the reference numbers ----------------------------------------------------------------------------
def test_resnetsmall_reference(budget_report: Callable[[str], BudgetReport]) -> None:
    report = budget_report("resnetsmall")
    assert report.params == 4_754_218
    assert report.total_params == 4_754_218
    assert report.macs == pytest.approx(271.42e6, rel=0.005)
    assert report.within_budget
    assert report.macs == sum(v for k, v in report.macs_by_operator.items() if k in MAC_OPERATORS)
    assert report.macs_by_operator["batch_norm"] > 0  # the by-operator totals keep every operator
    assert "batch_norm" not in MAC_OPERATORS


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet44", 658_586),
        ("resnet56", 853_018),
        ("resnet110", 1_727_962),
    ],
)
def test_cifar_resnet_params(name: str, params: int, budget_report: Callable[[str], BudgetReport]) -> None:
    report = budget_report(name)
    assert (report.params, report.total_params) == (params, params)
    assert report.within_budget


def test_resnet20_macs(budget_report: Callable[[str], BudgetReport]) -> None:
    assert budget_report("resnet20").macs == pytest.approx(40.55e6, rel=0.01)


def test_preactresnet18_is_over_budget(budget_report: Callable[[str], BudgetReport]) -> None:
    report = budget_report("preactresnet18")
    assert report.params == 11_171_146
    assert not report.within_budget
    assert report.reason.startswith(
        "preactresnet18: 11,171,146 trainable parameters >= budget 5,000,000 (is over budget)"
    )


@pytest.mark.parametrize("name", ["resnet20", "resnetsmall", "airnet", "wrn16-4"])
def test_macs_match_torch_flop_counter(name: str, budget_report: Callable[[str], BudgetReport]) -> None:
    """fvcore's conv + linear MACs == PyTorch's conv + (add)mm flops / 2."""
    model = cifarbudget.create_model(name).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert set(by_op) <= {"aten.convolution", "aten.mm", "aten.addmm"}, by_op
    torch_macs = (by_op["aten.convolution"] + by_op.get("aten.mm", 0) + by_op.get("aten.addmm", 0)) / 2
    ours = budget_report(name).macs
    assert ours == pytest.approx(torch_macs, rel=0.001)


# --- what counts as a parameter ------------------------------------------------------------------
class TiedAndPruned(torch.nn.Module):
    """An embedding-style tied pair of linear layers, a pruned conv, and a frozen layer."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)  # 8*3*9 + 8 = 224
        torch.nn.utils.prune.l1_unstructured(self.conv, "weight", amount=0.5)  # weight_orig stays 216
        self.encode = torch.nn.Linear(8, 8, bias=False)  # 64
        self.decode = torch.nn.Linear(8, 8, bias=False)
        self.decode.weight = self.encode.weight  # tied: the very same Parameter in two modules
        self.frozen = torch.nn.Linear(8, 8)  # 72, not trainable
        self.frozen.requires_grad_(False)
        self.head = torch.nn.Linear(8, num_classes)  # 8*10 + 10 = 90

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).mean(dim=(2, 3))
        return self.head(self.frozen(self.decode(self.encode(h))))


def test_unique_trainable_parameters_count_ties_once_and_pruned_layers_in_full() -> None:
    import torch.nn.utils.prune  # noqa: F401  (registers the pruning hooks used above)

    model = TiedAndPruned()
    hand = (8 * 3 * 9 + 8) + 8 * 8 + (8 * 10 + 10)  # conv (weight_orig + bias), the tied matrix once, head
    assert hand == 378
    report = check_budget(model, name="tied")
    assert report.params == hand
    assert report.macs == report.macs_torch  # fvcore and torch's counter agree
    # torchinfo counts the pruned layer by its mask (108 of 216 kept) and the tied matrix twice:
    # 378 - 108 + 64 = 334. The disagreement is a note; the budget uses the unique count.
    assert report.params_torchinfo == 334
    assert report.notes[0].startswith("torchinfo counts 334 trainable parameters, 378 unique")


def test_an_operator_fvcore_cannot_count_is_reported_never_silently_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(32, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = self.proj(x.mean(dim=1))  # (N, 32, 32)
            out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
            return out.flatten(1)[:, :10]

    with caplog.at_level("WARNING", logger="cifarbudget"):
        report = check_budget(Attention(), name="attn")
    assert report.unsupported_ops["aten::scaled_dot_product_attention"] == 1
    assert any("fvcore cannot count aten::scaled_dot_product_attention (1 call)" in n for n in report.notes)
    assert any("attn: fvcore cannot count" in r.getMessage() for r in caplog.records)

"""The cifarbudget-timm plugin (``plugins/cifarbudget-timm``): every ``timm-*`` model on 32x32.

Skipped unless the plugin is installed (``pip install -e plugins/cifarbudget-timm``). The plugin
is registered with ``reset_plugins(extra_plugins=...)``, as docs/plugins.md tells plugin authors
to test theirs, so the result does not depend on which other plugins are installed.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import cifarbudget
from cifarbudget.cli import cli
from cifarbudget.plugins import reset_plugins

cifarbudget_timm = pytest.importorskip("cifarbudget_timm")

NAMES = sorted(cifarbudget_timm.MODELS)
# name -> trainable parameters at num_classes=10, as the plugin's README lists them (timm 1.0).
PARAMS = {
    "timm-efficientnet_b0": 4_020_358,
    "timm-mobilenetv3_large_100": 4_214_842,
    "timm-mobilenetv3_small_100": 1_528_106,
    "timm-regnety_004": 3_907_554,
    "timm-resnet10t": 4_903_242,
}


@pytest.fixture(autouse=True)
def timm_plugin() -> Iterator[None]:
    reset_plugins(autoload=False, extra_plugins=(("timm", cifarbudget_timm),))
    yield
    reset_plugins(autoload=False)


def test_plugin_registers_its_models_under_the_timm_prefix() -> None:
    assert sorted(PARAMS) == NAMES
    assert cifarbudget.list_models("timm-*") == NAMES
    entries = cifarbudget.describe("models", "timm-*")
    for entry in entries:
        timm_name = cifarbudget_timm.MODELS[entry.name].timm_name
        assert entry.plugin == "timm"
        assert entry.name == f"timm-{timm_name}"
        assert entry.description.startswith(f"timm {timm_name} (")
        assert "stride" in entry.description  # names the adaptation


def test_plugin_uses_only_the_public_contract() -> None:
    tree = ast.parse(Path(cifarbudget_timm.__file__).read_text())
    imported = [
        (node.module, [a.name for a in node.names])
        if isinstance(node, ast.ImportFrom)
        else (None, [a.name for a in node.names])
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    from_cifarbudget = [
        (module, names)
        for module, names in imported
        if (module or "").startswith("cifarbudget") or any(n.startswith("cifarbudget") for n in names)
    ]
    assert from_cifarbudget == [("cifarbudget", ["hookimpl"])]


@pytest.mark.parametrize("name", NAMES)
def test_model_forwards_32x32_and_keeps_a_4x4_map(name: str) -> None:
    torch.manual_seed(0)
    model = cifarbudget.create_model(name)
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    assert model.forward_features(x).shape[-2:] == (4, 4)  # the last stage is not starved to 1x1
    assert cifarbudget.create_model(name, num_classes=100).get_classifier().out_features == 100


@pytest.mark.parametrize("name", NAMES)
def test_check_counts_every_parameter_and_is_within_budget(name: str) -> None:
    result = CliRunner().invoke(cli, ["check", name, "--json"])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    model = cifarbudget.create_model(name)
    assert report["params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report["params"] == PARAMS[name] < 5_000_000
    assert report["within_budget"] is True
    # sensible for 32x32: neither an ImageNet-sized cost nor a network collapsed to 1x1 maps
    assert 10_000_000 < report["macs"] < 400_000_000


def test_models_are_built_without_pretrained_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    calls: list[dict[str, Any]] = []
    real = timm.create_model

    def spy(name: str, **kwargs: Any) -> torch.nn.Module:
        calls.append({"name": name, **kwargs})
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    cifarbudget.create_model("timm-mobilenetv3_small_100", num_classes=7, drop_rate=0.2, pretrained=True)
    assert calls == [
        {"name": "mobilenetv3_small_100", "num_classes": 7, "drop_rate": 0.2, "pretrained": False}
    ]


def test_adaptation_fails_loudly_when_timm_moves_a_layer() -> None:
    with pytest.raises(RuntimeError, match="no strided convolution in Linear"):
        cifarbudget_timm.unstride(torch.nn.Linear(2, 2))

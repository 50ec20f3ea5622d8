"""The ceiling recipes ``best-under-5m`` and ``best-under-5m-c100`` (issue 13, check 4): what they
pin, and one short epoch of the whole recipe on synthetic data (every component built and run:
WRN-40-2, AutoAugment, crop-flip, Cutout, SAM, label smoothing, the cosine schedule, flip TTA).

The smoke run uses a 96/40-image synthetic dataset registered here: the recipe's model is a
327M-MAC network, and the builtin synthetic test split (2,000 images, two TTA views) would take
minutes on two CPU cores. Accuracy is not checked here (it needs a GPU; docs/best-under-5m.md).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import cifarbudget
from cifarbudget.data.synthetic import make_synthetic
from cifarbudget.runner import resolve_spec


def _tiny(root: Path, *, train: bool, download: bool):  # type: ignore[no-untyped-def]
    return make_synthetic(96 if train else 40, seed=0, split_seed=1 if train else 2)


def _plugin() -> types.ModuleType:
    plugin = types.ModuleType("tiny_data")

    @cifarbudget.hookimpl
    def cifarbudget_register_datasets(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("tiny", _tiny, description="96 / 40 synthetic images")

    plugin.cifarbudget_register_datasets = cifarbudget_register_datasets  # type: ignore[attr-defined]
    return plugin


def test_the_recipe_pins_its_sources_choices() -> None:
    spec = resolve_spec(recipe="best-under-5m")
    assert spec.model == "wrn40-2" and spec.dataset == "cifar10"
    assert spec.augs == ("crop-flip", "autoaugment", "cutout")  # Cubuk et al.'s order
    assert spec.aug_params["autoaugment"] == {"policy": "cifar10"}
    assert spec.aug_params["cutout"] == {"size": 16, "p": 1.0}
    assert (spec.optimizer, spec.opt_params["rho"], spec.nesterov) == ("sam", 0.05, True)
    assert (spec.lr, spec.weight_decay, spec.batch_size, spec.label_smoothing) == (0.1, 5e-4, 256, 0.1)
    assert (spec.sched, spec.epochs, spec.tta, spec.val_size) == ("cosine", 200, "flip", 0)
    c100 = resolve_spec(recipe="best-under-5m-c100")
    assert c100.dataset == "cifar100"
    assert {**c100.to_dict(), "dataset": "cifar10", "data_id": ""} == {**spec.to_dict(), "data_id": ""}


def test_both_recipes_are_within_the_budget_at_their_class_counts() -> None:
    assert cifarbudget.check_budget("wrn40-2").params == 2_243_546
    assert cifarbudget.check_budget("wrn40-2", num_classes=100).params == 2_255_156


def test_one_epoch_of_the_whole_recipe_runs_and_records_it(tmp_path: Path) -> None:
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("tiny_data", _plugin()),))
    result = cifarbudget.run(
        recipe="best-under-5m",
        dataset="tiny",
        epochs=1,
        batch_size=32,
        results_dir=tmp_path,
        progress=False,
    )
    assert result.status == "finished" and result.budget["params"] == 2_243_546
    record = json.loads((tmp_path / result.run_id / "result.json").read_text())
    assert [a["name"] for a in record["pipeline"]] == ["crop-flip", "autoaugment", "cutout"]
    assert len(record["history"]) == 1 and record["history"][0]["train_loss"] > 0
    # SAM: two forward/backward passes per step, counted in the training compute
    assert record["compute"]["train_macs"] == 2 * 3 * 96 * record["budget"]["macs"]
    assert result.final["tta_views"] == 2 and result.test_acc_tta is not None

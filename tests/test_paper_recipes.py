"""The reference paper's recipes, field by field against its notebook (issue 8, check 7).

Patil, Kotla, Mugathihalli Kumaregowda, "Optimizing ResNet Architecture for CIFAR-10 under
Parameter Constraints" (NYU); Resnet.ipynb in github.com/ranjan2601/ResNet-MiniProject. The
tables below are written from the notebook, not from the recipes, so a change of a recipe or of a
library default that alters the protocol fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifarbudget import identity
from cifarbudget.builtin.recipes import paper_optimized
from cifarbudget.runner import resolve_spec, run

COMMON = {
    "model": "resnetsmall",
    "model_params": {},
    "optimizer": "sgd",  # optim.SGD(..., momentum=0.9, weight_decay=5e-4)
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "opt_params": {},
    "loss": "soft-ce",  # nn.CrossEntropyLoss (CutMix: lam * CE(a) + (1 - lam) * CE(b), the same)
    "loss_params": {},
    "label_smoothing": 0.0,
    "batch_size": 128,
    "warmup_epochs": 0.0,
    "ema": 0.0,
    "val_size": 0,  # trained on all 50,000 images
}
CROP = {
    "padding": 4,
    "padding_mode": "black",
    "flip": True,
}  # RandomCrop(32, padding=4) + RandomHorizontalFlip()

PAPER_INITIAL = {
    **COMMON,
    "augs": ("crop-flip",),
    "aug_params": {"crop-flip": CROP},
    "lr": 0.1,
    "sched": "multistep",  # MultiStepLR(milestones=[50, 75], gamma=0.1) over 100 epochs
    "sched_params": {"milestones": [0.5, 0.75], "gamma": 0.1},
    "epochs": 100,
    "tta": "none",
}
PAPER_OPTIMIZED = {
    **COMMON,
    # the notebook's order: crop, hflip, RandomApply([blur], p=0.3), RandomVerticalFlip(0.05), Normalize,
    # RandomErasing(p=0.5, scale=(0.02, 0.2)) [value 0, ratio (0.3, 3.3)], then CutMix on the batch
    "augs": ("crop-flip", "blur", "vflip", "erasing", "cutmix"),
    "aug_params": {
        "crop-flip": CROP,
        "blur": {"sigma": [0.1, 1.5], "p": 0.3, "kernel_size": 11},
        "vflip": {"p": 0.05},
        "erasing": {"p": 0.5, "area": [0.02, 0.2], "aspect": [0.3, 3.3], "mode": "const"},
        "cutmix": {"alpha": 1.0, "p": 0.5, "mode": "batch"},
    },
    "lr": 0.01,  # learning_rate = 0.01 in the code (the repository README says 0.1)
    "sched": "cosine",  # CosineAnnealingLR(T_max=200), scheduler.step() once per epoch
    "sched_params": {"per_epoch": True, "min_lr_factor": 0.0},
    "epochs": 200,
    "tta": "paper5",  # identity, hflip, Pad(4)+CenterCrop(32), gaussian_filter(sigma=1), vflip
}


@pytest.mark.parametrize(
    ("recipe", "table"), [("paper-initial", PAPER_INITIAL), ("paper-optimized", PAPER_OPTIMIZED)]
)
def test_the_resolved_recipe_is_the_notebooks_field_by_field(recipe: str, table: dict) -> None:
    spec = resolve_spec(recipe=recipe).to_dict()
    for field, expected in table.items():
        got = spec[field]
        got = tuple(got) if isinstance(expected, tuple) else got
        assert got == expected, f"{recipe}: {field} is {got!r}, the notebook has {expected!r}"


def test_the_recipes_resolve_to_the_notebooks_components() -> None:
    """Resolved with every default filled in: what the run id hashes and what is built."""
    comps = identity.components(resolve_spec(recipe="paper-optimized", dataset="synthetic"))
    params = {a["name"]: a["params"] for a in comps["augs"]}
    assert params["erasing"]["attempts"] == 10  # torchvision's RandomErasing tries 10 boxes
    assert params["cutmix"] == {"alpha": 1.0, "p": 0.5, "mode": "batch"}
    assert comps["sched"]["params"]["per_epoch"] is True
    assert (
        comps["model"]["params"]["num_blocks"] == [4, 4, 4, 3]
        if "num_blocks" in comps["model"]["params"]
        else True
    )


def test_paper_optimized_trains_and_evaluates_its_five_views(tmp_path: Path) -> None:
    """One short epoch of the whole recipe (every augmentation, the schedule, paper5) on synthetic
    data; with airnet-small for the CPU's sake (resnetsmall's count is checked in test_models.py)."""
    result = run(
        "airnet-small",
        recipe="paper-optimized",
        dataset="synthetic",
        epochs=1,
        train_subset=256,
        batch_size=64,
        results_dir=tmp_path,
        progress=False,
    )
    assert result.status == "finished" and result.spec["lr"] == 0.01
    record = json.loads((tmp_path / result.run_id / "result.json").read_text())
    assert record["spec"]["val_size"] == 0 and record["data"]["n_val"] == 0
    assert [a["name"] for a in record["pipeline"]] == ["crop-flip", "blur", "vflip", "erasing", "cutmix"]
    assert result.final["tta_views"] == 5 and result.test_acc_tta is not None


@pytest.mark.parametrize(
    ("recipe", "run_id"),
    [
        ("speedrun-cpu-muon", "airnet-small-imagefolder-e9-s0-8f35c740abe0"),  # first round's final row
        ("speedrun-cpu-v2", "airnet-small-imagefolder-e9-s0-c973f89c058f"),  # second round's
        ("speedrun-cpu-v3", "airnet-small-imagefolder-e9-s0-96650794add8"),  # row Q's (rounds 3-5)
        ("speedrun-cpu-v4", "airnet-small-imagefolder-e10-s0-3a75d71b2754"),  # row AF's (round 6)
        ("speedrun-cpu-v5", "airnet-small-imagefolder-e9-s0-c9745cef3bd1"),  # row AH's (round 7)
        ("speedrun-cpu-v6", "airnet-small-imagefolder-e9-s0-96936a1c3d3e"),  # row AP's (round 9)
        ("speedrun-cpu-v7", "airnet-small-imagefolder-e9-s0-96936a1c3d3e"),  # AP's, TTA weight 0.75
        ("speedrun-cpu-v8", "airnet-small-imagefolder-e9-s0-9910fcd90ad1"),  # row BA's (round 11)
        ("speedrun-cpu-v9", "airnet-small-imagefolder-e9-s0-a4abc3029904"),  # row BU's (round 15)
    ],
)
def test_the_cpu_speedrun_recipes_are_the_cpu_tracks_final_rows(recipe: str, run_id: str) -> None:
    """Each recipe resolves to the runs of a final row of results/cpu-track: the same run id (seed
    0) as the recorded run, when the real data (which the id fingerprints) is here, and the record
    has the recipe's TTA evaluation (policy and parameters)."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    record = Path(__file__).resolve().parents[1] / "results" / "cpu-track" / "runs" / run_id / "result.json"
    if not (shared / "cifar10-jpeg-train.zip").exists() or not record.exists():
        pytest.skip("needs ../shared/data and the recorded run")
    spec = resolve_spec(recipe=recipe, data_dir=shared, seed=0)
    assert spec.run_id == run_id
    assert spec.tta_key in json.loads(record.read_text())["final"]["tta_evals"]


# --- a recipe's parameters belong to its components -------------------------------------------
@pytest.mark.parametrize(
    ("recipe", "override", "field", "expected", "dropped"),
    [
        # Muon's own learning rate goes with Muon; the BatchNorm details SGD also takes stay
        (
            "speedrun-cpu-v3",
            {"optimizer": "sgd"},
            "opt_params",
            {"bn_bias_lr_scale": 64, "norm_weight_decay": 0},
            "optimizer 'sgd' does not take muon_lr",
        ),
        ("speedrun-cpu-v6", {"model": "resnet20"}, "model_params", {}, "model 'resnet20' does not take"),
        ("speedrun-cpu-v7", {"tta": "flip"}, "tta_params", {}, "TTA policy 'flip' does not take weight"),
        ("speedrun-cpu-v7", {"tta": "multicrop"}, "tta_params", {"weight": 0.75}, None),  # multicrop takes it
        (
            "paper-optimized",
            {"augs": "crop-flip+cutmix"},
            "aug_params",
            {k: paper_optimized()["aug_params"][k] for k in ("crop-flip", "cutmix")},
            "the pipeline crop-flip+cutmix has no blur, erasing, vflip",
        ),
    ],
)
def test_naming_another_component_keeps_only_the_recipe_parameters_it_takes(
    recipe: str,
    override: dict,
    field: str,
    expected: dict,
    dropped: str | None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--recipe speedrun-cpu-v3 --optimizer sgd`` was an error about ``muon_lr``, a parameter the
    user never gave: the recipe's parameters now follow its components, and what is dropped is
    said (once per process: a sweep resolves the same override at every grid point)."""
    monkeypatch.setattr("cifarbudget.spec._SAID", set())
    with caplog.at_level("INFO", logger="cifarbudget"):
        spec = resolve_spec(recipe=recipe, dataset="synthetic", **override)
    assert getattr(spec, field) == expected
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"recipe {recipe}:")]
    assert ([dropped in said[0]] if said else []) == ([True] if dropped else []), said


def test_parameters_given_with_the_new_component_are_still_checked(tmp_path: Path, invoke) -> None:
    args = ["run", "--recipe", "speedrun-cpu-v3", "--dataset", "synthetic", "--epochs", "1"]
    args += ["--train-subset", "256", "--val-size", "64", "--batch-size", "64"]
    args += ["--results-dir", str(tmp_path), "--quiet"]
    ok = invoke([*args, "--optimizer", "sgd"])  # was: "optimizer 'sgd' has no parameter muon_lr"
    assert ok.exit_code == 0, ok.output
    bad = invoke([*args, "--optimizer", "sgd", "--opt-param", "muon_lr=0.1"])
    assert bad.exit_code == 1 and "optimizer 'sgd' has no parameter muon_lr" in bad.stderr

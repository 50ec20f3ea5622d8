"""Run identity: what the run id hashes, and what follows from it (issue 8's identity checks).

- The id of a fixed spec is pinned: a change that silently changes every id (and would make every
  stored run look new) fails here; changing ids on purpose bumps IDENTITY_VERSION and the result
  schema, and updates this pin.
- A component's changed default gives a different id; TTA, the budget verdict and where the data
  live do not; the data's content does.
- Runs that differ only in TTA train once; the second only evaluates the checkpoint.
- ``run --from`` and a leaderboard row's rerun command reproduce recorded runs exactly (CPU).
"""

from __future__ import annotations

import json
import shlex
import types
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import Result
from PIL import Image
from records import image_folder

import cifarbudget
from cifarbudget.augment.pipeline import BatchAugmentation
from cifarbudget.identity import IDENTITY_VERSION, training_identity
from cifarbudget.results import SCHEMA_VERSION, load_result
from cifarbudget.spec import resolve_spec

Invoke = Callable[..., Result]
TINY = dict(dataset="synthetic", epochs=1, train_subset=256, val_size=64, batch_size=64)
TINY_ARGS = [
    "--dataset",
    "synthetic",
    "--epochs",
    "1",
    "--train-subset",
    "256",
    "--val-size",
    "64",
    "--batch-size",
    "64",
]


def test_the_id_of_a_fixed_spec_is_pinned() -> None:
    spec = resolve_spec("resnet20", dataset="synthetic", epochs=3)
    # If this fails, every stored run id changed. Only change it on purpose: bump IDENTITY_VERSION
    # (and the result schema), and say so in docs/results.md.
    assert (IDENTITY_VERSION, SCHEMA_VERSION) == (2, 2)
    assert spec.run_id == "resnet20-synthetic-e3-s0-21ef8fa8e258"
    identity = training_identity(spec)
    assert identity["components"]["model"] == {"name": "resnet20", "params": {"depth": 20}}
    assert identity["components"]["augs"] == [
        {"name": "crop-flip", "params": {"flip": True, "padding": 4, "padding_mode": "reflect"}}
    ]
    assert "tta" not in identity and "budget" not in identity and "allow_over_budget" not in identity


def test_what_does_and_does_not_change_the_id() -> None:
    base = resolve_spec("resnet20", dataset="synthetic", epochs=3)
    same = [
        resolve_spec("resnet20", dataset="synthetic", epochs=3, tta="flip"),  # evaluation only
        resolve_spec("resnet20", dataset="synthetic", epochs=3, budget="4M"),  # a verdict, not training
        resolve_spec(
            "resnet20", dataset="synthetic", epochs=3, aug_params={"crop-flip": {"padding": 4}}
        ),  # default
    ]
    assert {s.run_id for s in same} == {base.run_id}
    different = [
        resolve_spec("resnet20", dataset="synthetic", epochs=3, seed=1),
        resolve_spec("resnet20", dataset="synthetic", epochs=3, aug_params={"crop-flip": {"padding": 2}}),
        resolve_spec("resnet20", dataset="synthetic", epochs=3, sched_params={"gamma": 0.2}),
        resolve_spec("resnet20", dataset="synthetic", epochs=3, opt_params={"bn_bias_lr_scale": 64}),
    ]
    assert len({s.run_id for s in different} | {base.run_id}) == 5
    assert different[0].config_id == base.config_id  # the seed aside, the same configuration
    assert different[1].config_id != base.config_id


def _aug_plugin(default_p: float) -> types.ModuleType:
    class Jitter(BatchAugmentation):
        name = "jitter"

        def __init__(self, p: float = default_p) -> None:
            self.p = p

        def params(self) -> dict[str, float]:
            return {"p": self.p}

        def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return images, targets

    return _plugin(f"jitter_{default_p}", "augmentations", "jitter", Jitter)


def _plugin(module: str, kind: str, name: str, factory: Callable[..., object]) -> types.ModuleType:
    """A plugin module whose ``cifarbudget_register_<kind>`` hook adds ``factory`` as ``name``."""
    plugin = types.ModuleType(module)

    def register(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add(name, factory, description=f"a test {kind} entry")

    hook = f"cifarbudget_register_{kind}"
    register.__name__ = hook
    setattr(plugin, hook, cifarbudget.hookimpl(register))
    return plugin


def test_a_changed_component_default_changes_the_id() -> None:
    ids = []
    for default_p in (0.5, 0.6):
        cifarbudget.reset_plugins(autoload=False, extra_plugins=(("jitter", _aug_plugin(default_p)),))
        spec = resolve_spec("resnet20", dataset="synthetic", epochs=3, augs="jitter")
        assert training_identity(spec)["components"]["augs"][1] == {
            "name": "jitter",
            "params": {"p": default_p},
        }
        ids.append(spec.run_id)
    assert ids[0] != ids[1]  # old runs are not taken for runs of the new default


def _model_plugin(with_option: bool) -> types.ModuleType:
    """A model before and after it gained an option whose default builds the same network."""
    from torch import nn

    def tiny(num_classes: int, width: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, width, 3), nn.Flatten(), nn.LazyLinear(num_classes))

    if with_option:

        def factory(num_classes: int = 10, width: int = 8, sharpen: bool = False) -> nn.Module:
            return tiny(num_classes, width)

        factory.identity_neutral = {"sharpen": False}  # type: ignore[attr-defined]
    else:

        def factory(num_classes: int = 10, width: int = 8) -> nn.Module:  # type: ignore[misc]
            return tiny(num_classes, width)

    return _plugin(f"tiny_{with_option}", "models", "tiny", factory)


def test_an_option_added_at_its_neutral_value_keeps_the_recorded_ids() -> None:
    """``identity_neutral``: a new option at the value that builds what was built before leaves
    the id alone (recorded runs are still found); any other value is a new run."""
    ids = {}
    for with_option in (False, True):
        cifarbudget.reset_plugins(autoload=False, extra_plugins=(("tiny", _model_plugin(with_option)),))
        ids[with_option] = resolve_spec("tiny", dataset="synthetic", epochs=3).run_id
        if with_option:
            explicit = resolve_spec("tiny", dataset="synthetic", epochs=3, model_params={"sharpen": False})
            sharpened = resolve_spec("tiny", dataset="synthetic", epochs=3, model_params={"sharpen": True})
    assert ids[True] == ids[False] == explicit.run_id
    assert sharpened.run_id != ids[False]
    cifarbudget.reset_plugins()
    # the builtin case: airnet-small's identity_init / whiten_freeze (added after the CPU track's
    # first round) at False give the ids that round recorded
    plain = resolve_spec("airnet-small", dataset="synthetic", epochs=3, model_params={"whiten": True})
    off = resolve_spec(
        "airnet-small",
        dataset="synthetic",
        epochs=3,
        model_params={"whiten": True, "identity_init": False, "whiten_freeze": False},
    )
    assert plain.run_id == off.run_id
    assert "identity_init" not in training_identity(plain)["components"]["model"]["params"]

    # and an optimizer's: muon's muon_normalize (added in the track's eleventh round) at False,
    # head_lr_scale (the fourteenth) at 1
    def muon(**extra: bool | float):
        opt_params = {"muon_lr": 0.15, **extra}
        return resolve_spec(
            "airnet-small", dataset="synthetic", epochs=3, optimizer="muon", opt_params=opt_params
        )

    before, unnormalised, normalised = muon(), muon(muon_normalize=False), muon(muon_normalize=True)
    assert before.run_id == unnormalised.run_id != normalised.run_id
    assert "muon_normalize" not in training_identity(before)["components"]["optimizer"]["params"]
    assert before.run_id == muon(head_lr_scale=1.0).run_id == muon(head_lr_scale=1).run_id
    assert muon(head_lr_scale=4.0).run_id not in (before.run_id, normalised.run_id)


def _image_folder(root: Path, shade: int) -> Path:
    return image_folder(root, shade)


def test_the_data_content_is_part_of_the_id_and_keys_the_decode_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFARBUDGET_CACHE", str(tmp_path / "cache"))
    a = _image_folder(tmp_path / "a", 10)
    b = _image_folder(tmp_path / "b", 10)  # the same images in another folder
    c = _image_folder(tmp_path / "c", 90)  # other images
    ids = {
        name: resolve_spec("resnet20", dataset="imagefolder", data_dir=root, epochs=1).run_id
        for name, root in (("a", a), ("b", b), ("c", c))
    }
    assert ids["a"] == ids["b"] != ids["c"]  # content, not location
    from cifarbudget.data.imagefolder import load_imagefolder

    first = load_imagefolder(a, train=True)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    Image.new("RGB", (32, 32), (255, 255, 255)).save(a / "train" / "cat" / "0.png")  # edit one image
    edited = load_imagefolder(a, train=True)  # decoded again, not served stale from the cache
    assert not torch.equal(first.images, edited.images)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    assert resolve_spec("resnet20", dataset="imagefolder", data_dir=a, epochs=1).run_id != ids["a"]


def test_a_truncated_cache_file_is_rebuilt_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CIFARBUDGET_CACHE", str(tmp_path / "cache"))
    root = _image_folder(tmp_path / "data", 10)
    from cifarbudget.data.imagefolder import load_imagefolder

    good = load_imagefolder(root, train=False)
    (cached,) = (tmp_path / "cache").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])
    with caplog.at_level("WARNING", logger="cifarbudget"):
        again = load_imagefolder(root, train=False)
    assert torch.equal(good.images, again.images)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert (
        len(warnings) == 1 and "is unreadable" in warnings[0] and "decoding the images again" in warnings[0]
    )


def _zip_of(folder: Path, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
    return archive.parent


def test_a_zip_of_the_folder_loads_the_same_images_and_its_content_keys_the_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifarbudget.data.imagefolder import imagefolder_metadata, load_imagefolder

    monkeypatch.setenv("CIFARBUDGET_CACHE", str(tmp_path / "cache"))
    folder = _image_folder(tmp_path / "folder", 10)
    zipped = _zip_of(folder, tmp_path / "zipped" / "data.zip")
    for train in (True, False):
        a, b = load_imagefolder(folder, train=train), load_imagefolder(zipped, train=train)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes
    meta = imagefolder_metadata(zipped)
    assert (meta["classes"], meta["n_train"], meta["n_test"]) == (["cat", "dog"], 60, 20)
    assert imagefolder_metadata(_zip_of(folder, tmp_path / "again" / "data.zip")) == meta
    Image.new("RGB", (32, 32), (255, 255, 255)).save(folder / "train" / "cat" / "0.png")  # edit one image
    assert (
        imagefolder_metadata(_zip_of(folder, tmp_path / "edited" / "data.zip"))["fingerprint"]
        != meta["fingerprint"]
    )


def test_macos_hidden_files_are_not_images_of_the_folder_or_its_zip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder copied from a Mac (``._0.png`` resource forks, ``.DS_Store``) and a zip made by its
    Finder (``__MACOSX/...``): the same images, metadata and run id as the clean folder."""
    from cifarbudget.data.imagefolder import imagefolder_metadata, load_imagefolder

    monkeypatch.setenv("CIFARBUDGET_CACHE", str(tmp_path / "cache"))
    clean = _image_folder(tmp_path / "clean", 10)
    mac = _image_folder(tmp_path / "mac", 10)
    apple_double = b"\x00\x05\x16\x07" + bytes(60)  # not an image
    for split in ("train", "test"):
        (mac / split / "cat" / "._0.png").write_bytes(apple_double)
        (mac / split / ".DS_Store").write_bytes(b"\x00")
        (mac / split / ".hidden-class").mkdir()
        (mac / split / ".hidden-class" / "0.png").write_bytes(apple_double)
    clean_zip = _zip_of(clean, tmp_path / "zipped" / "data.zip")
    mac_zip = _zip_of(clean, tmp_path / "mac-zipped" / "data.zip")
    with zipfile.ZipFile(mac_zip / "data.zip", "a") as zf:
        zf.writestr("__MACOSX/train/cat/._0.png", apple_double)
        zf.writestr("train/cat/._1.png", apple_double)
    # (a folder's fingerprint hashes file contents, a zip's its CRCs: like is compared with like)
    for root, same in ((mac, clean), (mac_zip, clean_zip)):
        assert imagefolder_metadata(root) == imagefolder_metadata(same)
        assert torch.equal(
            load_imagefolder(root, train=True).images, load_imagefolder(same, train=True).images
        )


def test_runs_that_differ_only_in_tta_train_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cifarbudget.engine import Engine

    first = cifarbudget.run("resnet20", results_dir=tmp_path, progress=False, **TINY)
    monkeypatch.setattr(Engine, "fit", lambda *a, **k: pytest.fail("trained again"))
    flipped = cifarbudget.run("resnet20", results_dir=tmp_path, progress=False, tta="flip", **TINY)
    multi = cifarbudget.run("resnet20", results_dir=tmp_path, progress=False, tta="flip-shift", **TINY)
    assert first.run_id == flipped.run_id == multi.run_id
    record = load_result(tmp_path / first.run_id)
    evals = record.final["tta_evals"]
    assert set(evals) == {"flip", "flip-shift"} and evals["flip-shift"]["views"] == 10
    for entry in evals.values():  # each added evaluation says when, with which code, on what
        assert set(entry["evaluated"]) == {"at", "git_revision", "device_name", "command"}
        assert entry["evaluated"]["at"] >= record.manifest["started_at"]
    assert record.history == first.history  # the training record is untouched
    from cifarbudget import leaderboard as lb

    runs, _ = lb.load_results(tmp_path)
    assert sorted(runs["tta"]) == ["flip", "flip-shift"]  # one row per evaluated policy
    assert set(runs["test_acc"]) == {first.test_acc}


def test_run_from_a_record_and_a_rerun_command_reproduce_runs_exactly(tmp_path: Path, invoke: Invoke) -> None:
    base = [
        "run",
        "airnet-small",
        *TINY_ARGS,
        "--aug",
        "crop-flip+cutmix",
        "--tta",
        "flip",
        "--quiet",
        "--json",
    ]
    first = json.loads(invoke([*base, "--results-dir", str(tmp_path / "a")]).stdout)
    again = invoke(
        ["run", "--from", first["run_dir"], "--results-dir", str(tmp_path / "b"), "--quiet", "--json"]
    )
    assert again.exit_code == 0, again.output
    rerun = json.loads(again.stdout)
    assert rerun["run_id"] == first["run_id"]
    assert rerun["final"]["test_acc"] == first["final"]["test_acc"]  # bit-identical on the CPU
    assert rerun["final"]["test_acc_tta"] == first["final"]["test_acc_tta"]
    assert [h["train_loss"] for h in rerun["history"]] == [h["train_loss"] for h in first["history"]]
    other_seed = json.loads(
        invoke(
            [
                "run",
                "--from",
                first["run_dir"],
                "--seed",
                "1",
                "--results-dir",
                str(tmp_path / "b"),
                "--quiet",
                "--json",
            ]
        ).stdout
    )
    assert other_seed["run_id"] != first["run_id"] and other_seed["spec"]["seed"] == 1

    board = json.loads(invoke(["leaderboard", str(tmp_path / "a"), "--json"]).stdout)["data"]
    (row,) = board
    argv = shlex.split(row["rerun"])
    assert argv[:2] == ["cifarbudget", "sweep"] and "--seed" in argv
    swept = invoke([*argv[1:], "--results-dir", str(tmp_path / "c"), "--json"])
    assert swept.exit_code == 0, swept.output
    (outcome,) = json.loads(swept.stdout)
    assert outcome["run_id"] == first["run_id"] and outcome["test_acc"] == first["final"]["test_acc"]
    assert outcome["test_acc_tta"] == first["final"]["test_acc_tta"]


def test_a_schema_1_record_still_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from records import make_record

    record = make_record("resnet20", 1, 0.7)
    record["schema_version"] = 1
    del record["identity"]
    folder = tmp_path / record["run_id"]
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps(record))
    with caplog.at_level("WARNING", logger="cifarbudget"):
        loaded = load_result(folder)
    assert loaded.run_id == record["run_id"] and loaded.schema_version == 1
    assert any("its identity predates" in r.getMessage() for r in caplog.records)
    from cifarbudget import leaderboard as lb

    runs, warnings = lb.load_results(tmp_path)
    assert len(runs) == 1 and runs["config_id"][0].startswith("v1-")
    assert any("record(s) of schema 1" in w for w in warnings)


def test_parameter_options_merge_key_by_key_over_a_recipes() -> None:
    """`--recipe R --aug-param crop-flip.flip=false` keeps R's crop padding; one `--opt-param`
    keeps R's other optimizer parameters; a given key wins."""
    spec = resolve_spec(recipe="speedrun-cpu", aug_params={"crop-flip": {"flip": False}}, data_id="d")
    assert spec.aug_params == {"crop-flip": {"padding": 2, "flip": False}}
    spec = resolve_spec(
        recipe="speedrun-gpu",
        opt_params={"norm_weight_decay": 0.0},
        aug_params={"crop-flip": {"padding": 4}},
        data_id="d",
    )
    assert spec.opt_params == {"bn_bias_lr_scale": 64.0, "norm_weight_decay": 0.0}
    assert spec.aug_params == {"crop-flip": {"flip": False, "padding": 4}}


def test_git_revision_is_dirty_for_code_changes_not_for_result_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``+dirty`` flags uncommitted code; a run's records under ``results/`` are not code."""
    import shutil
    import subprocess

    from cifarbudget import results as results_module

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    package = repo / "cifarbudget"
    package.mkdir(parents=True)
    (package / "mod.py").write_text("x = 1\n")
    (repo / "results").mkdir()
    (repo / "results" / "result.json").write_text("{}\n")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init")
    monkeypatch.setattr(results_module, "__file__", str(package / "results.py"))

    def revision() -> str | None:
        results_module.git_revision.cache_clear()
        return results_module.git_revision()

    clean = revision()
    assert clean is not None and len(clean) == 40
    (repo / "results" / "result.json").write_text('{"tta_evals": {}}\n')
    assert revision() == clean  # a record changed: still clean
    (package / "mod.py").write_text("x = 2\n")
    assert revision() == clean + "+dirty"  # code changed
    results_module.git_revision.cache_clear()


def test_run_from_with_one_changed_parameter_keeps_the_recorded_others(
    tmp_path: Path, invoke: Invoke
) -> None:
    """``run --from RUN --sched-param min_lr_factor=0.1`` replaced the recorded sched_params, so a
    recorded ``per_epoch: true`` was silently dropped; an augmentation the new pipeline drops
    takes its recorded parameters with it, with a note (it failed naming an option not given)."""
    base = ["run", "airnet-small", *TINY_ARGS, "--quiet", "--json", "--results-dir", str(tmp_path / "a")]
    sched = ["--sched", "cosine", "--sched-param", "per_epoch=true"]
    first = json.loads(invoke([*base, *sched, "--aug", "cutmix", "--aug-param", "cutmix.alpha=0.5"]).stdout)
    again = invoke(
        [
            "run",
            "--from",
            first["run_dir"],
            "--sched-param",
            "min_lr_factor=0.1",
            "--results-dir",
            str(tmp_path / "b"),
            "--quiet",
            "--json",
        ]
    )
    assert again.exit_code == 0, again.output
    spec = json.loads(again.stdout)["spec"]
    assert spec["sched_params"] == {"per_epoch": True, "min_lr_factor": 0.1}
    assert spec["aug_params"] == {"cutmix": {"alpha": 0.5}}
    other = invoke(
        ["run", "--from", first["run_dir"], "--aug", "blur", "--results-dir", str(tmp_path / "b"), "--quiet"]
    )
    assert other.exit_code == 0, other.output
    assert "the pipeline crop-flip+blur has no cutmix (the run's aug_params); not used" in other.output


@pytest.mark.parametrize("spelling", ["False", "FALSE", "false"])
def test_a_flag_spelled_false_in_any_case_is_false(tmp_path: Path, invoke: Invoke, spelling: str) -> None:
    """``--sched-param per_epoch=False`` was the text "False", which the scheduler read as true:
    it trained the per_epoch=true run under a third run id."""
    argv = ["run", "airnet-small", *TINY_ARGS, "--sched", "cosine", "--quiet", "--json"]
    out = invoke([*argv, "--sched-param", f"per_epoch={spelling}", "--results-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    plain = invoke([*argv, "--sched-param", "per_epoch=false", "--results-dir", str(tmp_path)])
    assert json.loads(out.stdout)["run_id"] == json.loads(plain.stdout)["run_id"]
    assert json.loads(out.stdout)["spec"]["sched_params"] == {"per_epoch": False}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--sched", "cosine", "--sched-param", "per_epoch=no"],
            "scheduler 'cosine': per_epoch must be true or false, got 'no'",
        ),
        (["--aug-param", "crop-flip.flip=0"], "augmentation 'crop-flip': flip must be true or false, got 0"),
        (["--tta", "paper5", "--tta-param", "quantize=yes"], "quantize must be true or false, got 'yes'"),
        (
            ["--sched", "onecycle", "--sched-param", "cycle_momentum=1"],
            "cycle_momentum must be true or false, got 1",
        ),
        (
            ["--aug-param", "crop-flip.padding=2", "--aug-param", "crop-flip.padding=3"],
            "crop-flip.padding is given twice",
        ),
        (["--opt-param", "nesterov_x=1", "--opt-param", "nesterov_x=2"], "nesterov_x is given twice"),
    ],
)
def test_a_flag_that_is_not_true_or_false_and_a_repeated_key_are_one_line(
    tmp_path: Path, invoke: Invoke, option: list[str], message: str
) -> None:
    out = invoke(["run", "airnet-small", *TINY_ARGS, "--results-dir", str(tmp_path), "--quiet", *option])
    assert out.exit_code != 0 and message in out.output, out.output
    assert "Traceback" not in out.output and not any(tmp_path.glob("*/result.json"))


def test_parameter_values_spelled_as_people_write_them() -> None:
    from cifarbudget.spec import parse_flat_params

    values = parse_flat_params(
        ["a=.5", "b=1.", "c=5e+6", "d=True", "e=[1, 2]", "f=reflect", "g=-3", "h= 2 "], "--opt-param"
    )
    assert values == {"a": 0.5, "b": 1.0, "c": 5e6, "d": True, "e": [1, 2], "f": "reflect", "g": -3, "h": 2}

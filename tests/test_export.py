"""Export: safetensors, TorchScript and ONNX files, read back by each format's own reader.

One tiny run (resnet20, 1 epoch on 512 synthetic images) is trained once for the module, and one
with EMA; every export is then loaded by safetensors / torch.jit / onnxruntime and its logits
compared with the run's PyTorch model on the synthetic test split.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

import cifarbudget
from cifarbudget.errors import RunError
from cifarbudget.export import (
    MAX_LOGIT_DIFF,
    NormalizedModel,
    export_run,
    load_check_images,
    load_exported_safetensors,
    read_export_metadata,
)
from cifarbudget.predict import load_model, load_run

pytestmark = pytest.mark.usefixtures("single_thread_module")  # many small CPU ops: one thread is faster


def _train(root: Path, model: str = "resnet20", train_subset: int = 512, **options: object) -> Path:
    cifarbudget.reset_plugins(autoload=False)
    result = cifarbudget.run(
        model,
        dataset="synthetic",
        epochs=1,
        train_subset=train_subset,
        val_size=0,
        lr=0.05,
        batch_size=64,
        results_dir=root,
        progress=False,
        **options,
    )
    assert result.status == "finished" and result.run_dir is not None
    return result.run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def ema_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("ema-runs"), ema=0.9)


@pytest.fixture(scope="module")
def test_images(run_dir: Path) -> torch.Tensor:
    result, _ = load_run(run_dir)
    return load_check_images(result, None, 300)


def _reference(run: Path, images: torch.Tensor) -> torch.Tensor:
    """The run's PyTorch logits, normalised as the trainer does (DeviceSplit.normalize)."""
    from cifarbudget.data.core import DeviceSplit, Split

    result, checkpoint = load_run(run)
    model = load_model(result, checkpoint)
    empty = Split(torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.long), ["a"])
    normalizer = DeviceSplit.from_split(empty, torch.device("cpu"), result.data["mean"], result.data["std"])
    with torch.no_grad():
        return model(normalizer.normalize(images))


def test_safetensors_round_trips_into_the_registered_model(
    run_dir: Path, test_images: torch.Tensor, tmp_path: Path
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = tmp_path / "model.safetensors"
    report = export_run(run_dir, "safetensors", out, check_images=200)
    assert report.passed and report.max_abs_diff == 0.0 and report.checked_images == 200
    assert out.stat().st_size == report.bytes and report.weights == "model"

    # the file is a plain state dict of the registered model
    result, _ = load_run(run_dir)
    registered = cifarbudget.create_model("resnet20", num_classes=10)
    tensors = load_file(str(out))
    assert set(tensors) == set(registered.state_dict())
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["classes"]) == result.data["classes"]
    assert json.loads(meta["mean"]) == result.data["mean"] and json.loads(meta["std"]) == result.data["std"]
    assert json.loads(meta["spec"]) == result.spec
    assert meta["run_id"] == result.run_id and meta["model"] == "resnet20"

    # rebuilt with normalisation: the same logits as the run's model, bit for bit
    rebuilt = load_exported_safetensors(out)
    with torch.no_grad():
        logits = rebuilt(test_images.float())
    assert torch.equal(logits, _reference(run_dir, test_images))
    bare = load_exported_safetensors(out, normalize=False)
    assert type(bare) is type(registered) and not isinstance(bare, NormalizedModel)

    sidecar = json.loads(report.sidecar.read_text())  # type: ignore[union-attr]
    assert report.sidecar == tmp_path / "model.safetensors.json"
    assert sidecar["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sidecar["classes"] == result.data["classes"] and sidecar["spec"] == result.spec


def test_safetensors_rebuilds_the_network_the_run_trained(tmp_path: Path) -> None:
    """A run built with ``--model-param act=relu``: its weights also fit the default (GELU)
    network, so only the parameters recorded in the file rebuild the one that was trained."""
    run = _train(tmp_path / "runs", "airnet-small", train_subset=128, model_params={"act": "relu"})
    result, _ = load_run(run)
    images = load_check_images(result, None, 100)
    out = tmp_path / "model.safetensors"
    assert export_run(run, "safetensors", out, check_images=100).max_abs_diff == 0.0
    default = cifarbudget.create_model("airnet-small", num_classes=10).eval()
    default.load_state_dict(load_exported_safetensors(out, normalize=False).state_dict())
    with torch.no_grad():
        logits = load_exported_safetensors(out)(images.float())
        wrong = NormalizedModel(default, result.data["mean"], result.data["std"])(images.float())
    assert torch.equal(logits, _reference(run, images))
    assert not torch.equal(wrong, logits)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_gives_identical_logits(run_dir: Path, test_images: torch.Tensor, tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    report = export_run(run_dir, "torchscript", out, check_images=200)
    assert report.passed and report.max_abs_diff == 0.0
    extra = {"cifarbudget.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["cifarbudget.json"])
    assert meta["run_id"] == load_run(run_dir)[0].run_id and meta["weights"] == "model"
    with torch.no_grad():
        from_float = module(test_images.float())
        from_uint8 = module(test_images)  # uint8 pixels work too: the cast is in the graph
    reference = _reference(run_dir, test_images)
    assert torch.equal(from_float, reference)
    assert torch.equal(from_uint8, reference)


def test_onnx_passes_the_onnxruntime_check(run_dir: Path, test_images: torch.Tensor, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    report = export_run(run_dir, "onnx", out)
    print(report.summary())
    assert report.checked_images == 1000 and report.check_split == "synthetic test split"
    assert report.max_abs_diff is not None and report.max_abs_diff < MAX_LOGIT_DIFF
    assert report.predictions_identical and report.passed
    assert f"{report.max_abs_diff:.2e}" in report.summary() and "onnxruntime" in report.summary()
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["passed"] is True and as_json["output"] == str(out) and as_json["format"] == "onnx"

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["classes"]) == load_run(run_dir)[0].data["classes"]
    assert props["normalization"].startswith("inside") and json.loads(props["image_size"]) == [32, 32]
    # an independent session, another batch size (the batch axis is dynamic)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": test_images[:7].float().numpy()})
    reference = _reference(run_dir, test_images[:7])
    assert torch.from_numpy(logits).sub(reference).abs().max() < MAX_LOGIT_DIFF
    # the predictions of the degenerate 1-epoch model still vary across classes
    assert len(set(_reference(run_dir, test_images).argmax(1).tolist())) >= 2


def test_ema_run_exports_the_ema_weights(
    ema_run_dir: Path, test_images: torch.Tensor, tmp_path: Path
) -> None:
    out = tmp_path / "ema.safetensors"
    report = export_run(ema_run_dir, "safetensors", out, check_images=100)
    assert report.weights == "ema" and report.passed
    assert read_export_metadata(out)["weights"] == "ema"
    with torch.no_grad():
        exported = load_exported_safetensors(out)(test_images.float())
    assert torch.equal(exported, _reference(ema_run_dir, test_images))  # load_model's EMA weights
    # ... which are not the raw training weights
    raw = cifarbudget.create_model("resnet20", num_classes=10)
    raw.load_state_dict(torch.load(ema_run_dir / "checkpoint.pt", weights_only=True)["model"])
    result, _ = load_run(ema_run_dir)
    with torch.no_grad():
        raw_logits = NormalizedModel(raw.eval(), result.data["mean"], result.data["std"])(test_images.float())
    assert (raw_logits - exported).abs().max() > 1e-3

    onnx_report = export_run(ema_run_dir, "onnx", tmp_path / "ema.onnx", check_images=100)
    assert onnx_report.passed and read_export_metadata(tmp_path / "ema.onnx")["weights"] == "ema"


def test_read_export_metadata_knows_every_format(run_dir: Path, tmp_path: Path) -> None:
    result, _ = load_run(run_dir)
    for fmt, name in (("safetensors", "m.safetensors"), ("torchscript", "m.pt"), ("onnx", "m.onnx")):
        export_run(run_dir, fmt, tmp_path / name, check=False)
        meta = read_export_metadata(tmp_path / name)
        assert meta["run_id"] == result.run_id and meta["spec"] == result.spec
        assert meta["mean"] == result.data["mean"] and meta["num_classes"] == 10


def test_a_failed_check_writes_nothing(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cifarbudget.export as export

    real = export._exported_runner

    def off_by_a_little(fmt: str, data: bytes):  # type: ignore[no-untyped-def]
        run, name = real(fmt, data)
        return (lambda x: torch.as_tensor(run(x)) + 2 * MAX_LOGIT_DIFF), name

    monkeypatch.setattr(export, "_exported_runner", off_by_a_little)
    out = tmp_path / "bad.onnx"
    with pytest.raises(RunError, match="export check failed, nothing written") as info:
        export_run(run_dir, "onnx", out, check_images=50)
    assert "\n" not in str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_user_mistakes_are_one_line_errors(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RunError, match="unknown export format 'tflite'"):
        export_run(run_dir, "tflite", tmp_path / "m")
    with pytest.raises(RunError, match="is a folder"):
        export_run(run_dir, "onnx", tmp_path)
    with pytest.raises(RunError, match="no run at"):
        export_run(tmp_path / "nowhere", "onnx", tmp_path / "m.onnx")
    # a run on CIFAR-10 whose data is not in the data folder: the check cannot load the test split
    import shutil

    moved = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, moved)
    record = json.loads((moved / "result.json").read_text())
    record["spec"]["dataset"] = "cifar10"
    (moved / "result.json").write_text(json.dumps(record))
    with pytest.raises(
        RunError, match="cannot check the export on the cifar10 test split: cifar10 is not in"
    ):
        export_run(moved, "safetensors", tmp_path / "m.safetensors", data_dir=tmp_path / "empty")
    assert not (tmp_path / "m.safetensors").exists()


def test_a_missing_optional_package_names_the_extra(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(RunError, match=r"needs the onnx package: pip install 'cifarbudget\[export\]'"):
        export_run(run_dir, "onnx", tmp_path / "m.onnx", check=False)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(RunError, match=r"pip install 'cifarbudget\[export\]'"):
        export_run(run_dir, "safetensors", tmp_path / "m.safetensors", check=False)
    assert not (tmp_path / "m.onnx").exists()

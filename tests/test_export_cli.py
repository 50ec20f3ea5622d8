"""``cifarbudget export`` and ``cifarbudget explain`` at the command line: what they print, what they
write (read back by onnxruntime, safetensors, PIL), and their one-line errors.

One tiny run (resnet20, 1 epoch on 256 synthetic images) is trained once per session (conftest's
``tiny_run_dir``). The
library behind both commands is tested in test_export.py and test_explain.py.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result

Invoke = Callable[..., Result]


pytestmark = pytest.mark.usefixtures("single_thread_module")  # many small CPU ops: one thread is faster


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir: Path) -> Path:
    return tiny_run_dir  # conftest's session run, read-only here


def _one_line_error(out: Result, code: int = 1) -> str:
    assert out.exit_code == code, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    return lines[0]


# --- export --------------------------------------------------------------------------------------
def test_export_onnx_prints_the_onnxruntime_check(run_dir: Path, tmp_path: Path, invoke: Invoke) -> None:
    import onnxruntime as ort

    from cifarbudget.export import read_export_metadata

    out_file = tmp_path / "model.onnx"
    out = invoke(["export", str(run_dir), "-o", str(out_file)])  # the format from the suffix
    assert out.exit_code == 0, out.output
    check = next(line for line in out.stdout.splitlines() if line.strip().startswith("check"))
    assert "passed: onnxruntime" in check and "on the first 1000 images of the synthetic test split" in check
    assert "predictions identical" in check
    diff = float(re.search(r"max \|logit difference\| ([0-9.e+-]+)", check).group(1))
    assert 0 <= diff < 1e-4
    assert read_export_metadata(out_file)["run_id"] == run_dir.name
    session = ort.InferenceSession(str(out_file), providers=["CPUExecutionProvider"])
    pixels = np.full((3, 3, 32, 32), 128.0, dtype=np.float32)
    assert session.run(["logits"], {"images": pixels})[0].shape == (3, 10)


def test_export_json_reports_the_check(run_dir: Path, tmp_path: Path, invoke: Invoke) -> None:
    out = invoke(
        [
            "export",
            str(run_dir),
            "--format",
            "torchscript",
            "-o",
            str(tmp_path / "m.pt"),
            "--check-images",
            "200",
            "--json",
        ]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["format"] == "torchscript" and report["checked_images"] == 200
    assert report["passed"] is True and report["predictions_identical"] is True
    assert report["max_abs_diff"] < 1e-4 and report["run_id"] == run_dir.name


def test_export_safetensors_without_check_round_trips(run_dir: Path, tmp_path: Path, invoke: Invoke) -> None:
    from cifarbudget.export import load_exported_safetensors
    from cifarbudget.predict import load_model, load_run

    out_file = tmp_path / "weights.safetensors"
    out = invoke(
        ["export", str(run_dir), "--format", "safetensors", "-o", str(out_file), "--no-check", "--json"]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["checked_images"] == 0 and report["passed"] is None and report["max_abs_diff"] is None
    assert report["sidecar"] == str(out_file) + ".json" and Path(report["sidecar"]).is_file()
    model = load_exported_safetensors(out_file, normalize=False)
    result, checkpoint = load_run(run_dir)
    reference = load_model(result, checkpoint).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_export_without_check_traces_at_the_recorded_image_size(
    run_dir: Path, tmp_path: Path, invoke: Invoke
) -> None:
    """Without check images, the ONNX graph is traced at the run's recorded ``data.image_size``
    (a dataset plugin's 40 x 40 images here), not at a hard-coded 32 x 32."""
    import shutil

    import onnx

    record = json.loads((run_dir / "result.json").read_text())
    assert record["data"]["image_size"] == [32, 32]
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    record["data"]["image_size"] = [40, 40]
    (copy / "result.json").write_text(json.dumps(record))
    out_file = tmp_path / "m.onnx"
    out = invoke(["export", str(copy), "--format", "onnx", "-o", str(out_file), "--no-check"])
    assert out.exit_code == 0, out.output
    graph = onnx.load(str(out_file)).graph
    dims = [d.dim_value or d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 40, 40] and isinstance(dims[0], str)  # the batch axis stays dynamic
    meta = {p.key: p.value for p in onnx.load(str(out_file)).metadata_props}
    assert json.loads(meta["image_size"]) == [40, 40]


def test_export_names_the_file_after_the_run_by_default(
    run_dir: Path, tmp_path: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = invoke(["export", str(run_dir), "--format", "torchscript", "--no-check"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / f"{run_dir.name}.pt").is_file()
    assert "check     skipped" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "{missing}", "-o", "{tmp}/m.onnx"], "Error: no run at "),
        (["export", "{tmp}", "-o", "{tmp}/m.onnx"], "is not a run folder: it has no result.json"),
    ],
)
def test_export_mistakes_are_one_line_errors(
    args: list[str], message: str, run_dir: Path, tmp_path: Path, invoke: Invoke
) -> None:
    filled = [a.format(missing=tmp_path / "nope", tmp=tmp_path, run=run_dir) for a in args]
    assert message in _one_line_error(invoke(filled))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{tmp}/m.bin"], "Error: give --format (safetensors, torchscript, onnx)"),
        (
            ["-o", "{tmp}/m.onnx", "--format", "safetensors"],
            "is a .onnx file name (onnx) but --format is safetensors",
        ),
    ],
)
def test_export_format_mistakes_are_usage_errors(
    args: list[str], message: str, run_dir: Path, tmp_path: Path, invoke: Invoke
) -> None:
    out = invoke(["export", str(run_dir), *[a.format(tmp=tmp_path) for a in args]])
    assert out.exit_code == 2 and message in out.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())  # nothing written


def test_export_to_a_folder_is_a_usage_error(run_dir: Path, tmp_path: Path, invoke: Invoke) -> None:
    out = invoke(["export", str(run_dir), "--format", "onnx", "-o", str(tmp_path)])
    assert out.exit_code == 2 and "is a directory" in out.stderr


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (
            "onnxruntime",
            [],
            "Error: the ONNX check needs the onnxruntime package: pip install 'cifarbudget[export]'",
        ),
        (
            "onnx",
            ["--no-check"],
            "Error: ONNX export needs the onnx package: pip install 'cifarbudget[export]'",
        ),
    ],
)
def test_export_without_the_extra_names_it(
    module: str,
    args: list[str],
    message: str,
    run_dir: Path,
    tmp_path: Path,
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    out = invoke(["export", str(run_dir), "-o", str(tmp_path / "m.onnx"), *args])
    assert _one_line_error(out) == message
    assert not (tmp_path / "m.onnx").exists()


# --- explain -------------------------------------------------------------------------------------
def test_explain_writes_a_png_whose_predictions_match_predict(
    run_dir: Path, tmp_path: Path, invoke: Invoke
) -> None:
    from PIL import Image

    from cifarbudget.predict import predict

    png = tmp_path / "gradcam.png"
    out = invoke(["explain", str(run_dir), "synthetic", "-o", str(png), "-n", "6", "--json"])
    assert out.exit_code == 0, out.output
    drawn = json.loads(out.stdout)
    assert drawn["output"] == str(png) and [im["index"] for im in drawn["images"]] == list(range(6))
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 150
    reference = predict(run_dir, "synthetic", tta="none", progress=False)
    assert [im["predicted"] for im in drawn["images"]] == reference.labels[:6]
    assert drawn["correct"] == sum(im["predicted"] == im["label"] for im in drawn["images"])
    assert all(0.0 < im["confidence"] <= 1.0 for im in drawn["images"])


def test_explain_chosen_images_and_layer(run_dir: Path, tmp_path: Path, invoke: Invoke) -> None:
    from cifarbudget.explain import find_target_layer
    from cifarbudget.predict import load_model, load_run

    png = tmp_path / "two.png"
    out = invoke(["explain", str(run_dir), "synthetic", "-o", str(png), "--index", "3", "--index", "1"])
    assert out.exit_code == 0, out.output
    layer = find_target_layer(load_model(*load_run(run_dir)))
    assert out.stdout.startswith(f"wrote {png}: Grad-CAM of 2 images at layer '{layer}'; ")
    assert re.search(r"; [0-2]/2 predicted right$", out.stdout.strip())
    other = invoke(
        ["explain", str(run_dir), "synthetic", "-o", str(png), "-n", "1", "--layer", "layers.3", "--json"]
    )
    assert other.exit_code == 0 and json.loads(other.stdout)["target_layer"] == "layers.3"


def test_explain_reads_a_pickle_with_a_trust_note(run_dir: Path, tmp_path: Path, invoke: Invoke) -> None:
    batch = tmp_path / "batch.pkl"
    data = np.random.default_rng(0).integers(0, 256, size=(3, 3072), dtype=np.uint8)
    batch.write_bytes(pickle.dumps({"data": data, "labels": [0, 1, 2]}))
    out = invoke(["explain", str(run_dir), str(batch), "-o", str(tmp_path / "p.png"), "--json"])
    assert out.exit_code == 0, out.output
    assert "is a pickle; loading it runs any code it holds" in out.stderr
    classes = json.loads((run_dir / "result.json").read_text())["data"]["classes"]
    assert [im["label"] for im in json.loads(out.stdout)["images"]] == classes[:3]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "bogus"], "Error: the model has no layer 'bogus'; the last conv layers are "),
        (["--index", "5000"], "Error: image indices must lie in 0..1999, got [5000]"),
    ],
)
def test_explain_mistakes_are_one_line_errors(
    extra: list[str], message: str, run_dir: Path, tmp_path: Path, invoke: Invoke
) -> None:
    out = invoke(["explain", str(run_dir), "synthetic", "-o", str(tmp_path / "g.png"), *extra])
    assert _one_line_error(out).startswith(message)
    assert not (tmp_path / "g.png").exists()


def test_explain_without_the_extra_names_it(
    run_dir: Path, tmp_path: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    out = invoke(["explain", str(run_dir), "synthetic", "-o", str(tmp_path / "g.png")])
    assert (
        _one_line_error(out)
        == "Error: Grad-CAM needs the grad-cam package: pip install 'cifarbudget[explain]'"
    )

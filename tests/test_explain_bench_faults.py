"""User mistakes in explain, bench and predict's output files are one clear line (never an
"unexpected" error), and a failed write changes no file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from cifarbudget.errors import RunError, StorageError
from cifarbudget.explain import gradcam_grid

Invoke = Callable[..., Result]

pytestmark = pytest.mark.usefixtures("single_thread_module")  # many small CPU ops: one thread is faster


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir: Path) -> Path:
    return tiny_run_dir  # conftest's session run, read-only here


def _copy_run(run_dir: Path, dest: Path, change: Callable[[dict], None]) -> Path:
    copy = dest / run_dir.name
    shutil.copytree(run_dir, copy)
    record = json.loads((copy / "result.json").read_text())
    change(record)
    (copy / "result.json").write_text(json.dumps(record))
    return copy


def _error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.output
    return lines[0]


# --- explain --layer ----------------------------------------------------------------------------
HEAD_MESSAGE = (
    "layer 'head' outputs (1, 10) for one image, not a 4-D (N, C, H, W) feature map as Grad-CAM needs; "
    "omit the layer (--layer) for the default, 'layers', the last spatial feature map"
)


def test_a_layer_without_a_spatial_map_is_refused_by_name(
    invoke: Invoke, run_dir: Path, tmp_path: Path
) -> None:
    """``--layer head`` (the classifier: (N, classes)) ended in 'unexpected ValueError: Invalid grads shape'."""
    out = tmp_path / "g.png"
    result = invoke(["explain", str(run_dir), "synthetic", "--layer", "head", "-n", "2", "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert _error_line(result) == f"Error: {HEAD_MESSAGE}"
    assert not out.exists()
    with pytest.raises(RunError) as info:
        gradcam_grid(run_dir, "synthetic", out, n=2, target_layer="head")
    assert str(info.value) == HEAD_MESSAGE
    # a layer with a spatial map is still drawn
    ok = invoke(["explain", str(run_dir), "synthetic", "--layer", "layers.2", "-n", "2", "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "at layer 'layers.2'" in ok.stdout and out.is_file()


# --- explain on a run that is still training ------------------------------------------------------
def test_explain_warns_about_a_run_that_has_not_finished(
    invoke: Invoke, run_dir: Path, tmp_path: Path
) -> None:
    """predict warns 'is running (k of n epochs)'; explain drew the maps without a word."""

    def running(record: dict) -> None:
        record["status"] = "running"
        record["spec"]["epochs"] = 3

    copy = _copy_run(run_dir, tmp_path, running)
    result = invoke(["explain", str(copy), "synthetic", "-n", "2", "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert (
        f"warning: run {run_dir.name} is running (1 of 3 epochs); explaining its last checkpoint"
        in result.stderr
    )
    finished = invoke(["explain", str(run_dir), "synthetic", "-n", "2", "-o", str(tmp_path / "g2.png")])
    assert finished.exit_code == 0 and "warning" not in finished.stderr


# --- explain RUN imagefolder reads the run's folder ---------------------------------------------------
def test_the_runs_dataset_by_name_reads_the_runs_folder(
    invoke: Invoke, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``explain RUN imagefolder`` read the default data folder, not the folder the run trained on
    (predict reads the run's)."""
    from PIL import Image

    data = tmp_path / "the-runs-data"
    for c in range(2):
        for split in ("train", "test"):
            folder = data / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (32, 32), (40 * c, 10 * i, 0)).save(folder / f"{c}{i}.png")
    (tmp_path / "default").mkdir()
    monkeypatch.setenv("CIFARBUDGET_DATA", str(tmp_path / "default"))  # holds nothing

    def imagefolder(record: dict) -> None:
        record["spec"]["dataset"] = "imagefolder"
        record["manifest"].setdefault("settings", {})["data_dir"] = str(data)

    copy = _copy_run(run_dir, tmp_path / "runs", imagefolder)
    result = invoke(["explain", str(copy), "imagefolder", "-o", str(tmp_path / "g.png"), "--json"])
    assert result.exit_code == 0, result.output
    drawn = json.loads(result.stdout)
    assert [image["label"] for image in drawn["images"]] == ["class0"] * 3 + ["class1"] * 3


# --- bench --num-classes ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-3"])
def test_bench_refuses_a_head_without_classes(invoke: Invoke, value: str) -> None:
    """``--num-classes 0`` ended in 'unexpected RuntimeError: random_ expects from < to'."""
    result = invoke(["bench", "resnet20", "--num-classes", value, "--device", "cpu", "--steps", "1"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--num-classes': {value} is not in the range x>=1." in result.stderr
    assert "unexpected" not in result.output
    from cifarbudget.bench import bench_model
    from cifarbudget.errors import RunError

    with pytest.raises(RunError, match=r"--num-classes >= 1, got 64, 0, 1, 0"):  # the library, too
        bench_model("resnet20", device="cpu", batch_size=64, warmup=0, steps=1, num_classes=0)


@pytest.mark.parametrize(
    ("option", "value"), [("--batch-size", "0"), ("--steps", "0"), ("--warmup-steps", "-1")]
)
def test_bench_numeric_options_are_checked(invoke: Invoke, option: str, value: str) -> None:
    result = invoke(["bench", "resnet20", option, value])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.stderr


# --- predict writes both files or neither ---------------------------------------------------------
def test_predict_leaves_the_csv_when_the_probabilities_cannot_be_written(
    invoke: Invoke, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-o p/new.csv --probs <read-only>/probs.npy`` exited 1 with the CSV already replaced."""
    import cifarbudget.io
    import cifarbudget.predict

    csv = tmp_path / "p" / "new.csv"
    csv.parent.mkdir()
    csv.write_text("the old submission\n")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    write = cifarbudget.io.atomic_write_bytes

    def refuse_read_only(
        path: Path | str, data: bytes
    ) -> None:  # a read-only mount (chmod does not stop root)
        if Path(path).parent == read_only:
            raise StorageError(
                f"cannot write {path}: Read-only file system (errno 30)", 30, "Read-only file system"
            )
        write(path, data)

    monkeypatch.setattr(cifarbudget.io, "atomic_write_bytes", refuse_read_only)
    monkeypatch.setattr(cifarbudget.predict, "atomic_write_bytes", refuse_read_only)
    probs = read_only / "probs.npy"
    result = invoke(["predict", str(run_dir), "synthetic", "-o", str(csv), "--probs", str(probs), "--quiet"])
    assert result.exit_code == 1, result.output
    assert csv.read_text() == "the old submission\n" and not probs.exists()  # the CSV was replaced
    assert _error_line(result) == (
        f"Error: cannot write {probs}: Read-only file system; neither {csv} nor {probs} was changed"
    )
    assert sorted(p.name for p in csv.parent.iterdir()) == ["new.csv"]  # no temporary left


def test_predict_refuses_a_file_where_a_folder_belongs_before_writing(
    invoke: Invoke, run_dir: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "new.csv"
    csv.write_text("the old submission\n")
    afile = tmp_path / "afile"
    afile.write_text("")
    probs = afile / "probs.npy"
    result = invoke(["predict", str(run_dir), "synthetic", "-o", str(csv), "--probs", str(probs), "--quiet"])
    assert result.exit_code == 1, result.output
    assert _error_line(result) == f"Error: cannot write {probs}: {afile} is a file, not a folder"
    assert csv.read_text() == "the old submission\n"
    same = invoke(["predict", str(run_dir), "synthetic", "-o", str(csv), "--probs", str(csv), "--quiet"])
    assert same.exit_code == 2 and "is also the CSV (-o)" in same.stderr
    assert csv.read_text() == "the old submission\n"


def test_predict_still_writes_both(invoke: Invoke, run_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    csv, probs = tmp_path / "out" / "s.csv", tmp_path / "probs" / "p.npy"
    result = invoke(["predict", str(run_dir), "synthetic", "-o", str(csv), "--probs", str(probs), "--quiet"])
    assert result.exit_code == 0, result.output
    assert csv.read_text().splitlines()[0] == "ID,Labels" and len(csv.read_text().splitlines()) == 2001
    assert np.load(probs).shape == (2000, 10)
    assert sorted(p.name for p in csv.parent.iterdir()) == ["s.csv"]

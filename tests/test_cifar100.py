"""CIFAR-100 end to end on a small 100-class image folder: run, plots, predict on a CIFAR-100 pickle, report."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from records import hundred_classes

import cifarbudget


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> cifarbudget.RunResult:
    root = hundred_classes(tmp_path_factory.mktemp("data"), per_class=4)
    cifarbudget.reset_plugins(autoload=False)
    return cifarbudget.run(
        "resnet20",
        dataset="imagefolder",
        data_dir=root,
        epochs=1,
        val_size=100,
        batch_size=100,
        results_dir=tmp_path_factory.mktemp("runs"),
        progress=False,
    )


def test_a_100_class_run_records_100_classes_and_a_readable_confusion_plot(
    run: cifarbudget.RunResult,
) -> None:
    assert run.status == "finished"
    assert len(run.data["classes"]) == 100 and run.budget["num_classes"] == 100
    assert len(run.final["confusion_matrix"]) == 100
    with Image.open(run.run_dir / "confusion.png") as png:  # the most-confused pairs, not a 100x100 grid
        width, height = png.size
    assert width > height and width < 2000


def test_most_confused_pairs_by_hand() -> None:
    from cifarbudget.plots import most_confused_pairs

    matrix = [[8, 2, 0], [5, 5, 0], [0, 1, 9]]
    assert most_confused_pairs(matrix, ["a", "b", "c"], k=2) == [("b", "a", 5, 0.5), ("a", "b", 2, 0.2)]


def test_predict_reads_a_cifar100_pickle_with_fine_labels(
    run: cifarbudget.RunResult, tmp_path: Path, invoke
) -> None:
    from cifarbudget.data.inputs import load_inputs

    split = load_inputs(f"imagefolder:{run.data['source'].split(':')[1]}")
    images = split.images.numpy()
    batch = {
        b"data": images.reshape(len(images), -1),  # N x 3072, CIFAR's rows
        b"fine_labels": split.labels.numpy().tolist(),
        b"coarse_labels": [0] * len(images),  # the 20 superclasses: not what a 100-class model predicts
        b"filenames": [f"{i}.png".encode() for i in range(len(images))],
    }
    path = tmp_path / "test"  # CIFAR-100's own file name has no extension
    path.write_bytes(pickle.dumps(batch))
    out = invoke(["predict", str(run.run_dir), str(path), "-o", str(tmp_path / "s.csv"), "--quiet", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["images"] == 100 and report["accuracy"] is not None
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "ID,Labels" and len(rows) == 101
    predicted = np.array([run.data["classes"].index(r.split(",")[1]) for r in rows[1:]])
    assert report["accuracy"] == float(np.mean(predicted == split.labels.numpy()))


def test_the_report_over_a_100_class_run_stays_readable(
    run: cifarbudget.RunResult, tmp_path: Path, invoke
) -> None:
    page = tmp_path / "report.html"
    out = invoke(["report", str(run.run_dir.parent), "-o", str(page)])
    assert out.exit_code == 0, out.output
    text = page.read_text()
    assert "most-confused" in text or "most confused" in text

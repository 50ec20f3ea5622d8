"""``cifarbudget predict``: input formats, the submission CSV, exact accuracy on the run's test split.

One tiny run (airnet-small with a ReLU instead of its GELU, on synthetic data, flip TTA, EMA) is
trained once for the module; its own test split must give exactly the recorded accuracies and
confusion matrices, with and without TTA. Other inputs are subsets of that split written in every supported layout.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result
from records import image_folder

import cifarbudget
from cifarbudget.errors import DataError
from cifarbudget.predict import Inputs, Predictions, load_inputs, predict
from cifarbudget.results import RunResult

Invoke = Callable[..., Result]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A finished run with flip TTA and EMA weights (ema=0.5 so that they differ from the raw ones),
    of a model built with a parameter that changes the network but not its state dict's keys or
    shapes (``act``): the weights would load into the model built without it, too."""
    cifarbudget.reset_plugins(autoload=False)
    return cifarbudget.run(
        "airnet-small",
        model_params={"act": "relu"},
        dataset="synthetic",
        epochs=1,
        train_subset=300,
        val_size=100,
        batch_size=32,
        optimizer="adamw",
        lr=3e-3,
        ema=0.5,
        tta="flip",
        results_dir=tmp_path_factory.mktemp("runs"),
        progress=False,
    )


@pytest.fixture(scope="module")
def split() -> Inputs:
    return load_inputs("synthetic")


@pytest.fixture(scope="module")
def split_predictions(run: RunResult, split: Inputs) -> Predictions:
    return predict(run.run_dir, split)  # the run's TTA (flip): both passes, with and without


def _subset(split: Inputs, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(len(split))[:n]


def _nchw(split: Inputs, idx: np.ndarray) -> np.ndarray:
    return split.images[torch.from_numpy(idx)].numpy()


def _read_csv(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- the run's own test split: exactly the recorded numbers --------------------------------------
def test_own_test_split_reproduces_the_record(run: RunResult, split_predictions: Predictions) -> None:
    p, final = split_predictions, run.final
    assert run.status == "finished" and p.tta == "flip" and len(p) == 2000
    assert len(set(p.indices.tolist())) >= 3  # not a constant classifier: the equalities below mean something
    assert p.accuracy == final["test_acc_tta"]
    assert p.accuracy_no_tta == final["test_acc"]
    assert p.confusion_matrix() == final["confusion_matrix_tta"]
    assert p.confusion_matrix(tta=False) == final["confusion_matrix"]
    assert (p.recorded_accuracy, p.recorded_accuracy_no_tta) == (final["test_acc_tta"], final["test_acc"])
    assert p.ids == [str(i) for i in range(1, 2001)]
    assert p.probs.shape == (2000, 10) and p.probs.dtype == np.float32
    np.testing.assert_allclose(p.probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(p.probs.argmax(axis=1), p.indices)


def test_ema_weights_are_the_ones_evaluated(
    run: RunResult, split: Inputs, split_predictions: Predictions
) -> None:
    """predict's probabilities are the flip-TTA softmax of the EMA weights, not of the raw ones, in
    the network the run trained (its ``model_params``), not the model's default one."""
    ckpt = torch.load(run.run_dir / "checkpoint.pt", weights_only=True)
    mean = torch.tensor(run.data["mean"]).view(1, 3, 1, 1) * 255
    std = torch.tensor(run.data["std"]).view(1, 3, 1, 1) * 255
    x = (split.images[:200].float() - mean) / std

    def flip_tta_probs(state: dict[str, torch.Tensor], **model_params: object) -> np.ndarray:
        model = cifarbudget.create_model("airnet-small", num_classes=10, **model_params).eval()
        model.load_state_dict(state)
        with torch.no_grad():
            return torch.softmax((model(x) + model(x.flip(-1))) / 2, dim=1).numpy()

    ema_state = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    assert run.spec["model_params"] == {"act": "relu"}
    ema_probs = flip_tta_probs(ema_state, act="relu")
    np.testing.assert_allclose(split_predictions.probs[:200], ema_probs, atol=1e-5)
    # what is told apart: the raw weights, and the same weights in the default (GELU) network
    assert np.abs(flip_tta_probs(ckpt["model"], act="relu") - ema_probs).max() > 1e-3
    assert np.abs(flip_tta_probs(ema_state) - ema_probs).max() > 1e-3


def test_cli_own_split_without_tta(
    invoke: Invoke, run: RunResult, split_predictions: Predictions, tmp_path: Path
) -> None:
    out = tmp_path / "sub.csv"
    result = invoke(["predict", str(run.run_dir), "synthetic", "--tta", "none", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    acc = run.final["test_acc"]
    assert f"accuracy {acc:.4f} ({round(acc * 2000)}/2000) with no TTA" in result.stdout
    assert "(equal)" in result.stdout
    rows = _read_csv(out)
    assert rows[0] == ["ID", "Labels"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, 2001)]
    assert split_predictions.indices_no_tta is not None
    assert [r[1] for r in rows[1:]] == [f"class{i}" for i in split_predictions.indices_no_tta.tolist()]


# --- Kaggle pickles ------------------------------------------------------------------------------
def test_kaggle_pickles_flat_and_nhwc_agree(
    invoke: Invoke, run: RunResult, split: Inputs, split_predictions: Predictions, tmp_path: Path
) -> None:
    idx = _subset(split, 200, seed=1)
    images = _nchw(split, idx)
    int_ids = np.random.default_rng(2).permutation(np.arange(5000, 5200))
    str_ids = [f"img-{i}" for i in int_ids]
    flat, nhwc = tmp_path / "flat.pkl", tmp_path / "nhwc.pickle"
    flat.write_bytes(pickle.dumps({b"data": images.reshape(200, 3072), b"ids": int_ids}))
    nhwc.write_bytes(pickle.dumps({"data": images.transpose(0, 2, 3, 1).copy(), "ids": str_ids}))

    outputs = {}
    for name, path, extra in [
        ("flat", flat, ["--header", "id,label"]),
        ("nhwc", nhwc, ["--labels", "index"]),
    ]:
        out, probs = tmp_path / f"{name}.csv", tmp_path / f"{name}.npy"
        args = ["predict", str(run.run_dir), str(path), "-o", str(out), "--probs", str(probs), *extra]
        result = invoke(args)
        assert result.exit_code == 0, result.output
        assert "runs any code" in result.stderr  # the pickle warning
        assert "accuracy" not in result.stdout  # unlabeled
        outputs[name] = (_read_csv(out), np.load(probs))

    (flat_rows, flat_probs), (nhwc_rows, nhwc_probs) = outputs["flat"], outputs["nhwc"]
    assert (flat_rows[0], nhwc_rows[0]) == (["id", "label"], ["ID", "Labels"])
    assert [r[0] for r in flat_rows[1:]] == [str(i) for i in int_ids]
    assert [r[0] for r in nhwc_rows[1:]] == str_ids
    assert np.array_equal(flat_probs, nhwc_probs)  # the two layouts are the same images
    expected = split_predictions.indices[idx]  # with the run's flip TTA, by original position
    assert [r[1] for r in flat_rows[1:]] == [f"class{i}" for i in expected.tolist()]
    assert [r[1] for r in nhwc_rows[1:]] == [str(i) for i in expected.tolist()]
    np.testing.assert_allclose(flat_probs, split_predictions.probs[idx], atol=1e-5)


# --- other layouts -------------------------------------------------------------------------------
def test_array_and_folder_layouts(split: Inputs, tmp_path: Path) -> None:
    from PIL import Image

    idx = _subset(split, 12, seed=3)
    nchw = _nchw(split, idx)
    nhwc = nchw.transpose(0, 2, 3, 1).copy()
    labels = split.labels[torch.from_numpy(idx)]
    np.save(tmp_path / "nhwc.npy", nhwc)
    np.save(tmp_path / "nchw.npy", nchw)
    np.save(tmp_path / "flat.npy", nchw.reshape(12, -1))
    np.savez(tmp_path / "xy.npz", x=nhwc, ids=np.array([f"a{i}" for i in range(12)]), y=labels.numpy())
    (tmp_path / "test_batch").write_bytes(  # CIFAR's own batch: no extension, bytes keys, labels
        pickle.dumps({b"data": nchw.reshape(12, -1), b"labels": labels.tolist(), b"filenames": [b"x"] * 12})
    )
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i, image in enumerate(nhwc, 1):  # 1.png .. 12.png: natural order puts 10 after 9
        Image.fromarray(image).save(pngs / f"{i}.png")
    (pngs / "notes.txt").write_text("ignored")

    expected = torch.from_numpy(nchw)
    for name in ("nhwc.npy", "nchw.npy", "flat.npy", "xy.npz", "test_batch", "pngs"):
        inputs = load_inputs(tmp_path / name)
        assert torch.equal(inputs.images, expected), name
    assert load_inputs(tmp_path / "flat.npy").ids == [str(i) for i in range(1, 13)]
    assert load_inputs(tmp_path / "flat.npy").labels is None
    assert load_inputs(tmp_path / "pngs").ids == [str(i) for i in range(1, 13)]
    npz = load_inputs(tmp_path / "xy.npz")
    assert npz.ids == [f"a{i}" for i in range(12)] and torch.equal(npz.labels, labels)
    batch = load_inputs(tmp_path / "test_batch")
    assert batch.kind == "pickle" and torch.equal(batch.labels, labels)
    one = load_inputs(pngs / "7.png")  # one image file: its stem is its id
    assert one.kind == "image" and one.ids == ["7"] and torch.equal(one.images, expected[6:7])
    (pngs / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not an image format PIL can read"):
        load_inputs(pngs / "broken.png")


def test_labeled_inputs_and_checkpoint_path(
    run: RunResult, split: Inputs, split_predictions: Predictions, tmp_path: Path
) -> None:
    from PIL import Image

    idx = np.arange(100)
    npz = tmp_path / "labeled.npz"
    np.savez(npz, data=_nchw(split, idx), labels=split.labels[:100].numpy())
    by_folder = predict(run.run_dir, npz, tta="none")
    by_checkpoint = predict(run.run_dir / "checkpoint.pt", npz, tta="none")
    assert np.array_equal(by_folder.probs, by_checkpoint.probs)
    assert split_predictions.indices_no_tta is not None
    assert np.array_equal(by_folder.indices, split_predictions.indices_no_tta[:100])
    assert by_folder.accuracy == float((by_folder.indices == split.labels[:100].numpy()).mean())
    assert by_folder.accuracy_no_tta is None and by_folder.recorded_accuracy is None  # not the test split

    # class subfolders: labeled, matched to the run's classes by name (here only class3 and class7)
    root = tmp_path / "classes"
    picked = [i for i in range(200) if int(split.labels[i]) in (3, 7)][:10]
    for i in picked:
        folder = root / f"class{int(split.labels[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(split.images[i].permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    labeled = predict(run.run_dir, root, tta="none")
    by_class = sorted(picked, key=lambda i: (int(split.labels[i]), i))  # natural order of img<i>
    assert labeled.targets is not None
    assert labeled.targets.tolist() == [int(split.labels[i]) for i in by_class]
    assert labeled.ids == [f"class{int(split.labels[i])}/img{i}" for i in by_class]


# --- errors: one line, exit 1 --------------------------------------------------------------------
def _write_error_case(case: str, tmp_path: Path) -> Path:
    images = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    path = (
        tmp_path
        / {
            "corrupt pickle": "bad.pkl",
            "wrong shape": "shape.npy",
            "wrong dtype": "float.npy",
            "ids mismatch": "ids.pkl",
            "ambiguous keys": "both.npz",
            "unknown extension": "images.txt",
        }[case]
    )
    if case == "corrupt pickle":
        path.write_bytes(b"\x80\x04\x95garbage")
    elif case == "wrong shape":
        np.save(path, np.zeros((5, 32, 32), dtype=np.uint8))
    elif case == "wrong dtype":
        np.save(path, images.astype(np.float32))
    elif case == "ids mismatch":
        path.write_bytes(pickle.dumps({b"data": images, b"ids": [1, 2, 3, 4]}))
    elif case == "ambiguous keys":
        np.savez(path, data=images, x=images)
    else:
        path.write_text("1,2,3\n")
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("corrupt pickle", "cannot read pickle"),
        ("wrong shape", "is not N x 3072, N x H x W x 3 or N x 3 x H x W"),
        ("wrong dtype", "images must be uint8 (0..255), got float32"),
        ("ids mismatch", "4 ids for 5 images"),
        ("ambiguous keys", "ambiguous"),
        ("unknown extension", "unknown extension '.txt'"),
    ],
)
def test_bad_input_is_one_line(
    invoke: Invoke, run: RunResult, tmp_path: Path, case: str, message: str
) -> None:
    path = _write_error_case(case, tmp_path)
    result = invoke(["predict", str(run.run_dir), str(path), "-o", str(tmp_path / "s.csv")])
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert line.startswith("Error: ") and message in line, line
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    ("where", "message"),
    [("missing", "no run at"), ("empty folder", "is not a run folder"), ("bad input", "no input at")],
)
def test_bad_run_or_input_name_is_one_line(
    invoke: Invoke, run: RunResult, tmp_path: Path, where: str, message: str
) -> None:
    target, source = {
        "missing": (tmp_path / "nope", "synthetic"),
        "empty folder": (tmp_path, "synthetic"),
        "bad input": (run.run_dir, "no-such-dataset"),
    }[where]
    result = invoke(["predict", str(target), source, "-o", str(tmp_path / "s.csv")])
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert line.startswith("Error: ") and message in line, line


def test_unknown_tta_names_close_matches(invoke: Invoke, run: RunResult, tmp_path: Path) -> None:
    result = invoke(["predict", str(run.run_dir), "synthetic", "--tta", "flp", "-o", str(tmp_path / "s.csv")])
    assert result.exit_code == 1
    assert "Did you mean: flip" in _one_error_line(result)


def _copy_run(run: RunResult, dest: Path, **changes: object) -> Path:
    """A copy of the module's run folder with top-level fields of its record changed (``final`` merged)."""
    import json
    import shutil

    assert run.run_dir is not None
    copy = dest / run.run_dir.name
    shutil.copytree(run.run_dir, copy)
    record = json.loads((copy / "result.json").read_text())
    for key, value in changes.items():
        record[key] = {**record[key], **value} if key == "final" and isinstance(value, dict) else value
    (copy / "result.json").write_text(json.dumps(record))
    return copy


def test_the_run_is_checked_before_a_pickle_is_loaded(invoke: Invoke, run: RunResult, tmp_path: Path) -> None:
    diverged = _copy_run(run, tmp_path, status="diverged", error="loss is nan at epoch 1")
    data = tmp_path / "images.pkl"
    data.write_bytes(pickle.dumps({"images": np.zeros((2, 32, 32, 3), np.uint8)}))
    result = invoke(["predict", str(diverged), str(data), "-o", str(tmp_path / "s.csv")])
    assert result.exit_code == 1
    assert "diverged" in _one_error_line(result) and "pickle" not in result.stderr  # never unpickled


def test_other_tta_evaluations_of_the_run_are_named(invoke: Invoke, run: RunResult, tmp_path: Path) -> None:
    """A run evaluated again with another policy (a sweep's --tta flip --tta multicrop): predict
    uses the run's own and says which others exist."""
    evals = dict(run.final["tta_evals"])
    evals["multicrop"] = evals["flip"]  # the entry's content does not matter here, only its key
    copy = _copy_run(run, tmp_path, final={"tta_evals": evals})
    args = ["predict", str(copy), "synthetic", "-o", str(tmp_path / "s.csv"), "--quiet"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "note: used the run's own TTA (flip); it was also evaluated with multicrop" in result.stderr
    assert "also evaluated" not in invoke([*args, "--tta", "flip"]).stderr  # chosen: nothing to say


def test_the_runs_dataset_by_name_reads_the_runs_data_folder(tmp_path: Path) -> None:
    """``predict RUN imagefolder`` reads the folder the run trained on, not the default data folder;
    a folder that is not there says how to name one."""
    from types import SimpleNamespace

    from cifarbudget.predict import with_run_data_dir

    run = SimpleNamespace(spec={"dataset": "imagefolder"}, manifest={"settings": {"data_dir": "/data/cifar"}})
    assert with_run_data_dir("imagefolder", run) == "imagefolder:/data/cifar"  # type: ignore[arg-type]
    assert with_run_data_dir("imagefolder:/elsewhere", run) == "imagefolder:/elsewhere"  # type: ignore[arg-type]
    assert with_run_data_dir("cifar10", run) == "cifar10"  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"does not exist: give the input as imagefolder:ROOT"):
        load_inputs(f"imagefolder:{tmp_path / 'nope'}")
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(DataError, match=r"data folder .*afile is not a folder"):  # not NotADirectoryError
        load_inputs(f"imagefolder:{afile}")


def _image_folder(root: Path, shade: int) -> Path:
    return image_folder(root, shade, n_train=12, n_test=4)


def test_a_folder_of_the_same_name_elsewhere_is_not_the_runs_test_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's data folder is recorded absolute, and its own test split is recognised by the data
    id: a relative ``small`` read from another working directory (other images, the same layout and
    sizes) was taken for the run's split, and its accuracy compared with the record's."""
    from types import SimpleNamespace

    from cifarbudget.predict import _own_test_split
    from cifarbudget.runner import RunSettings, resolve_spec

    monkeypatch.setenv("CIFARBUDGET_CACHE", str(tmp_path / "cache"))
    here = _image_folder(tmp_path / "here" / "small", 10)
    _image_folder(tmp_path / "elsewhere" / "small", 90)
    monkeypatch.chdir(tmp_path / "here")
    assert RunSettings(data_dir="small").data_dir == here  # what the run records
    spec = resolve_spec("resnet20", dataset="imagefolder", data_dir="small", epochs=1)
    result = SimpleNamespace(spec=spec.to_dict(), data={"source": f"imagefolder:{here}:test", "n_test": 8})
    assert _own_test_split(load_inputs("imagefolder:small"), result)  # type: ignore[arg-type]
    assert _own_test_split(load_inputs(f"imagefolder:{here}"), result)  # type: ignore[arg-type]
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert not _own_test_split(load_inputs("imagefolder:small"), result)  # type: ignore[arg-type]

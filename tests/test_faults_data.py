"""Data faults are one clear line: a plugin's malformed split, a corrupt CIFAR folder, a download
that fails on the disk rather than on the network."""

from __future__ import annotations

import errno
import urllib.error
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import Result

import cifarbudget
from cifarbudget.data.core import as_split
from cifarbudget.data.sources import cifar10, cifar100
from cifarbudget.errors import DataError

Invoke = Callable[..., Result]
IMAGES = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
LABELS = torch.tensor([0, 1, 0, 1])
WHERE = "dataset 'plug' (train split): "


def _raw(**changes: object) -> SimpleNamespace:
    fields: dict[str, object] = {"images": IMAGES, "labels": LABELS, "classes": ["a", "b"]}
    fields.update(changes)
    return SimpleNamespace(**fields)


# --- a plugin's split (as_split) ----------------------------------------------------------------
def test_numpy_images_and_integer_labels_are_converted() -> None:
    """numpy labels raised AttributeError ('numpy.ndarray' object has no attribute 'long') and numpy
    images 'must be uint8 ... got uint8'; the contract now converts both."""
    split = as_split(
        _raw(images=IMAGES.numpy(), labels=np.array([0, 1, 0, 1], dtype=np.int32)), "plug", "train"
    )
    assert split.images.dtype == torch.uint8 and torch.equal(split.images, IMAGES)
    assert split.labels.dtype == torch.int64 and split.labels.tolist() == [0, 1, 0, 1]
    assert split.classes == ["a", "b"] and split.source == "plug:train"
    assert as_split(_raw(classes=("a", "b")), "plug", "train").classes == ["a", "b"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # truncated silently to [0, 1, 0, 1] before
        (
            {"labels": torch.tensor([0.7, 1.2, 0.0, 1.9])},
            "labels must be integer class indices, got torch.float32 (float labels are not rounded)",
        ),
        (
            {"labels": np.array([0.7, 1.2, 0.0, 1.9])},
            "labels must be integer class indices, got torch.float64 (float labels are not rounded)",
        ),
        ({"labels": [0, 1, 0, 1]}, "labels must be an integer torch tensor or numpy array, got list"),
        ({"images": IMAGES.tolist()}, "images must be a uint8 torch tensor or numpy array, got list"),
        ({"classes": None}, "classes must be a list of class names (str), got NoneType"),
        ({"classes": [0, 1]}, "classes must be a list of class names (str), got the name 0 (int)"),
        ({"labels": LABELS[:, None]}, "labels of shape (4, 1) for 4 images; need one per image, shape (4,)"),
        ({"labels": torch.tensor([0, 1, 0, 2])}, "labels outside 0..1 (2 classes)"),
        (
            {"images": IMAGES.permute(0, 2, 3, 1).numpy()},
            "images must be uint8 (N, 3, H, W), got torch.uint8 (4, 8, 8, 3); channels last?",
        ),
    ],
)
def test_a_malformed_split_is_one_line_naming_the_dataset_and_split(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError) as info:
        as_split(_raw(**changes), "plug", "train")
    assert str(info.value).startswith(WHERE + message), str(info.value)


def _plugin_dataset(labels: object) -> None:
    plugin = ModuleType("plug_data")

    @cifarbudget.hookimpl
    def cifarbudget_register_datasets(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("plug", lambda root, *, train, download: _raw(labels=labels))

    plugin.cifarbudget_register_datasets = cifarbudget_register_datasets  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("plug_data", plugin),))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([0.7, 1.2, 0.0, 1.9]), "labels must be integer class indices, got torch.float32"),
        ([0, 1, 0, 1], "labels must be an integer torch tensor or numpy array, got list"),
    ],
)
def test_the_cli_names_the_plugins_bad_split(
    invoke: Invoke, tmp_path: Path, labels: object, message: str
) -> None:
    """Through 'cifarbudget run': 'Error: dataset ... labels ...', not 'unexpected AttributeError'."""
    _plugin_dataset(labels)
    result = invoke(
        [
            *("run", "resnet20", "--dataset", "plug", "--epochs", "1", "--val-size", "0", "--quiet"),
            *("--results-dir", str(tmp_path / "runs")),
        ]
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: {WHERE}{message}"), result.stderr
    assert "unexpected" not in result.stderr


# --- a corrupt CIFAR folder ---------------------------------------------------------------------
CIFAR10_FILES = [*[f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"]


def test_a_truncated_cifar_folder_is_called_corrupt_not_missing(tmp_path: Path) -> None:
    """A truncated pickle failed torchvision's md5 check and was reported as 'cifar10 is not in
    DIR; pass --download'."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in CIFAR10_FILES:
        (folder / name).write_bytes(b"\x80\x02 truncated")
    with pytest.raises(DataError) as info:
        cifar10(tmp_path, train=True, download=False)
    assert str(info.value) == (
        f"cifar10 in {tmp_path} is corrupt or incomplete (cifar-10-batches-py/: data_batch_1, "
        "data_batch_2, data_batch_3 and 4 more fail its checksum; an interrupted download or copy?); "
        f"delete {folder} and pass --download, or --data-dir pointing at a complete copy"
    )
    for name in CIFAR10_FILES[1:]:
        (folder / name).unlink()
    with pytest.raises(DataError, match=r"missing data_batch_2, data_batch_3, data_batch_4 and 3 more; "):
        cifar10(tmp_path, train=False, download=False)


def test_an_incomplete_cifar100_folder_is_called_incomplete(tmp_path: Path) -> None:
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"x")
    with pytest.raises(DataError) as info:
        cifar100(tmp_path, train=True, download=False)
    message = str(info.value)
    assert message.startswith(
        f"cifar100 in {tmp_path} is corrupt or incomplete (cifar-100-python/: missing test, "
    )
    assert "train fails its checksum" in message and f"delete {tmp_path / 'cifar-100-python'}" in message


def test_the_cli_says_corrupt(invoke: Invoke, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True)
    (data / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    result = invoke(
        [
            *("run", "resnet20", "--dataset", "cifar10", "--data-dir", str(data), "--epochs", "1"),
            *("--quiet", "--results-dir", str(tmp_path / "runs")),
        ]
    )
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: cifar10 in {data} is corrupt or incomplete"), result.stderr
    assert "pass --download" in last and "is not in" not in last


def test_an_absent_cifar_folder_is_still_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^cifar10 is not in .*; pass --download"):
        cifar10(tmp_path, train=True, download=False)


# --- a download that fails on the disk or on the network ------------------------------------------
def test_a_download_into_a_path_under_a_file_says_why(tmp_path: Path) -> None:
    """'could not be downloaded (NotADirectoryError); offline?' dropped the cause: the disk, not the network."""
    afile = tmp_path / "afile"
    afile.write_text("")
    root = afile / "data"
    with pytest.raises(DataError) as info:
        cifar10(root, train=True, download=True)
    assert str(info.value) == (
        f"cifar10 is not in {root} and could not be downloaded: Not a directory: {root}; "
        "pass --data-dir with a folder you can write to"
    )


def test_a_read_only_folder_is_named_with_its_strerror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only data folder (a bind mount; chmod does not stop root) said '(OSError); offline?'."""
    lock = tmp_path / ".cifarbudget-download.lock"

    def read_only(cls: object, root: Path, train: bool) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(lock))

    monkeypatch.setattr("cifarbudget.data.sources._download_once", read_only)
    with pytest.raises(DataError) as info:
        cifar10(tmp_path, train=True, download=True)
    message = str(info.value)
    assert message == (
        f"cifar10 is not in {tmp_path} and could not be downloaded: Read-only file system: {lock}; "
        "pass --data-dir with a folder you can write to"
    )
    assert "offline" not in message


@pytest.mark.parametrize(
    "exc", [urllib.error.URLError("no route to host"), TimeoutError("timed out"), ConnectionResetError()]
)
def test_a_network_failure_keeps_the_offline_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    def offline(cls: object, root: Path, train: bool) -> None:
        raise exc

    monkeypatch.setattr("cifarbudget.data.sources._download_once", offline)
    with pytest.raises(
        DataError, match=rf"^cifar10 is not in .* could not be downloaded \({type(exc).__name__}\); offline\?"
    ):
        cifar10(tmp_path, train=True, download=True)
    (tmp_path / "cifar-10-batches-py").mkdir()  # a corrupt folder that cannot be fetched again
    with pytest.raises(
        DataError, match=r"^cifar10 in .* is corrupt or incomplete and could not be downloaded \("
    ):
        cifar10(tmp_path, train=True, download=True)

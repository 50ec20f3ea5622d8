"""Dataset factories behind the builtin dataset plugins (:mod:`cifarbudget.builtin.datasets`): CIFAR-10/100
through torchvision, ImageFolder trees or zips, and synthetic data."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarbudget.data.core import Split
from cifarbudget.errors import DataError, describe

SYNTHETIC_TRAIN = 6_000
SYNTHETIC_TEST = 2_000


def _torchvision_cifar(name: str, root: Path, train: bool, download: bool) -> Split:
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    root = Path(root).expanduser()
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:
        damage = _damage(cls, root)  # None: there is no such folder
        if not download:
            if damage is not None:
                raise DataError(_corrupt(name, cls, root, damage)) from None
            raise DataError(
                f"{name} is not in {root}; pass --download, or --data-dir pointing at the folder that holds "
                f"the extracted {cls.base_folder}/"
            ) from None
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            ds = _download_once(cls, root, train)
        except Exception as exc:
            what = (
                f"{name} is not in {root}" if damage is None else f"{name} in {root} is corrupt or incomplete"
            )
            if isinstance(exc, OSError) and not _network_error(exc):  # the folder, not the network
                path = exc.filename or root
                raise DataError(
                    f"{what} and could not be downloaded: {exc.strerror or describe(exc, with_type=False)}: "
                    f"{path}; pass --data-dir with a folder you can write to"
                ) from None
            raise DataError(
                f"{what} and could not be downloaded ({type(exc).__name__}); offline? "
                f"pass --data-dir with the extracted {cls.base_folder}/, or use "
                "--dataset imagefolder --data-dir DIR (train/ and test/ class folders or zips of them)"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(ds.targets, dtype=torch.long)
    return Split(images, labels, list(ds.classes), source=f"{name}:{root}:{'train' if train else 'test'}")


def _network_error(exc: BaseException) -> bool:
    """Whether a download failed on the network (no connection, DNS, timeout, TLS, HTTP), not on
    the disk (a read-only or full folder, a file where a folder belongs)."""
    import http.client
    import ssl
    import urllib.error

    network = (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror, socket.herror)
    return isinstance(exc, (*network, ssl.SSLError, http.client.HTTPException))


def _damage(cls: Any, root: Path) -> str | None:
    """What is wrong with torchvision's extracted CIFAR folder under ``root``: ``None`` when there
    is no such folder (nothing was ever there), else the files missing or failing their md5."""
    from torchvision.datasets.utils import check_integrity

    folder = root / cls.base_folder
    if not folder.is_dir():
        return None
    files = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    missing = [f for f, _ in files if not (folder / f).is_file()]
    bad = [f for f, md5 in files if f not in missing and not check_integrity(str(folder / f), md5)]

    def names(files: list[str]) -> str:
        return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")

    parts = []
    if missing:
        parts.append(f"missing {names(missing)}")
    if bad:
        parts.append(f"{names(bad)} {'fails' if len(bad) == 1 else 'fail'} its checksum")
    return "; ".join(parts) or "torchvision cannot read it"


def _corrupt(name: str, cls: Any, root: Path, damage: str) -> str:
    folder = root / cls.base_folder
    return (
        f"{name} in {root} is corrupt or incomplete ({cls.base_folder}/: {damage}; "
        f"an interrupted download or copy?); delete {folder} and pass --download, "
        "or --data-dir pointing at a complete copy"
    )


def _download_once(cls: Any, root: Path, train: bool) -> Any:
    """Download under a lock in ``root``: processes that start together (a sweep's workers, two
    shells) never fetch or extract into the same folder at once; whoever waits finds it there."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".cifarbudget-download.lock")):
        try:
            return cls(str(root), train=train, download=False)
        except RuntimeError:
            return cls(str(root), train=train, download=True)


def cifar10(root: Path, *, train: bool, download: bool) -> Split:
    return _torchvision_cifar("cifar10", root, train, download)


def cifar100(root: Path, *, train: bool, download: bool) -> Split:
    return _torchvision_cifar("cifar100", root, train, download)


def imagefolder(root: Path, *, train: bool, download: bool) -> Split:
    from cifarbudget.data.imagefolder import load_imagefolder

    return load_imagefolder(root, train=train)


def synthetic(root: Path, *, train: bool, download: bool) -> Split:
    from cifarbudget.data.synthetic import make_synthetic

    return make_synthetic(SYNTHETIC_TRAIN if train else SYNTHETIC_TEST, seed=0, split_seed=1 if train else 2)


def _cifar_metadata(name: str) -> Callable[[Path], dict[str, Any]]:
    def metadata(root: Path) -> dict[str, Any]:
        import torchvision

        cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
        n_classes = 10 if name == "cifar10" else 100
        # torchvision verifies the archive against this checksum: it is the data's identity
        return {
            "num_classes": n_classes,
            "n_train": 50_000,
            "n_test": 10_000,
            "fingerprint": f"{cls.filename}:md5:{cls.tgz_md5}",
        }

    return metadata


def _imagefolder_metadata(root: Path) -> dict[str, Any]:
    from cifarbudget.data.imagefolder import imagefolder_metadata

    return imagefolder_metadata(root)


def _synthetic_metadata(root: Path) -> dict[str, Any]:
    return {
        "num_classes": 10,
        "n_train": SYNTHETIC_TRAIN,
        "n_test": SYNTHETIC_TEST,
        "fingerprint": "synthetic-v1:seed0",
    }


# The optional ``metadata(root)`` of the dataset protocol: the class count, split sizes and a
# fingerprint of the content, known before any image is decoded. The budget is checked on the
# model with the right head, and the run's identity names the data it trains on.
cifar10.metadata = _cifar_metadata("cifar10")  # type: ignore[attr-defined]
cifar100.metadata = _cifar_metadata("cifar100")  # type: ignore[attr-defined]
imagefolder.metadata = _imagefolder_metadata  # type: ignore[attr-defined]
synthetic.metadata = _synthetic_metadata  # type: ignore[attr-defined]

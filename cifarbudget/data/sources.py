"""Dataset factories behind the builtin dataset plugins (:mod:`cifarbudget.builtin.datasets`): CIFAR-10/100
through torchvision, ImageFolder trees or zips, and synthetic data."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import torch

from cifarbudget.data.core import Split
from cifarbudget.errors import DataError

SYNTHETIC_TRAIN = 6_000
SYNTHETIC_TEST = 2_000


def _torchvision_cifar(name: str, root: Path, train: bool, download: bool) -> Split:
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    root = Path(root).expanduser()
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise DataError(
                f"{name} is not in {root}; pass --download, or --data-dir pointing at the folder that holds "
                f"the extracted {cls.base_folder}/"
            ) from None
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as exc:
            raise DataError(
                f"{name} is not in {root} and could not be downloaded ({type(exc).__name__}); offline? "
                f"pass --data-dir with the extracted {cls.base_folder}/, or use "
                "--dataset imagefolder --data-dir DIR (train/ and test/ class folders or zips of them)"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(ds.targets, dtype=torch.long)
    return Split(images, labels, list(ds.classes), source=f"{name}:{root}:{'train' if train else 'test'}")


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


def _imagefolder_num_classes(root: Path) -> int:
    from cifarbudget.data.imagefolder import imagefolder_classes

    return len(imagefolder_classes(root))


# The optional ``num_classes(root)`` of the dataset protocol: the class count before any image is
# decoded, so the budget is checked on the model that will be trained (its real head) first.
cifar10.num_classes = lambda root: 10  # type: ignore[attr-defined]
cifar100.num_classes = lambda root: 100  # type: ignore[attr-defined]
imagefolder.num_classes = _imagefolder_num_classes  # type: ignore[attr-defined]
synthetic.num_classes = lambda root: 10  # type: ignore[attr-defined]

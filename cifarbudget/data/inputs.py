"""Images to predict on, from every format a user brings: Kaggle-style pickles, ``.npy``/``.npz``
arrays, folders of images (flat or one subfolder per class), or the test split of a registered
dataset (``NAME[:ROOT]``). :func:`load_inputs` returns :class:`Inputs`; anything odd is a
one-line :class:`DataError`.

Pickle files run code on load: only read pickles you trust (``allow_pickle=False`` refuses them).
"""

from __future__ import annotations

import pickle
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarbudget.data.core import as_split, default_data_dir
from cifarbudget.data.decode import IMAGE_EXTENSIONS, decode_images
from cifarbudget.errors import DataError
from cifarbudget.registry import natural_key

PICKLE_SUFFIXES = (".pkl", ".pickle", ".p")
_DATA_KEYS = ("data", "x", "images")
_LABEL_KEYS = ("labels", "y")
_SPLIT_SPEC = re.compile(r"^([a-z0-9][a-z0-9_.\-]*)(?::(.+))?$")


@dataclass
class Inputs:
    """Images to predict: ``images`` uint8 ``(N, 3, H, W)``, one id per image, labels when known."""

    images: torch.Tensor
    ids: list[str]
    labels: torch.Tensor | None = None  # int64 (N,): indices into ``classes`` (or the run's classes)
    classes: list[str] | None = None  # the names of the label indices, when the source names them
    source: str = ""  # a description of where the images came from
    kind: str = ""  # pickle | npy | npz | image | folder | imagefolder | dataset
    dataset: str | None = None  # the registered dataset, for a split spec
    root: str | None = None  # its data folder (absolute), for a split spec

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_inputs(path: Path | str, *, allow_pickle: bool = True) -> Inputs:
    """Read images to predict from ``path``; raise a one-line :class:`DataError` on anything odd.

    ``path`` is a pickle (``.pkl``/``.pickle``/``.p``, or an extension-less file such as CIFAR's
    ``test_batch``) holding a dict with ``data`` (and ``ids``, ``labels``; bytes or str keys), a
    ``.npy`` or ``.npz`` array file, one image file, a folder of images, a folder of class subfolders of images, or
    ``NAME[:ROOT]``: the test split of the registered dataset NAME (ROOT defaults to the data dir).
    Arrays must be uint8 ``N x 3072`` (CIFAR's rows: 1024 red, 1024 green, 1024 blue values),
    ``N x H x W x 3`` or ``N x 3 x H x W``. Without ids in the file, the ids are ``1..N``.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return _load_folder(p)
    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:  # one image: its stem is its id
        return Inputs(_decode_files([p], p), [p.stem], source=str(p), kind="image")
    if p.is_file():
        kind = _file_kind(p)
        if kind == "pickle":
            if not allow_pickle:
                raise DataError(f"{p} is a pickle, which runs code when loaded; refused (allow_pickle=False)")
            return _load_pickle(p)
        return _load_npy(p) if kind == "npy" else _load_npz(p)
    match = _SPLIT_SPEC.fullmatch(str(path))
    if match:
        from cifarbudget.plugins import get_registry

        if match.group(1) in get_registry("datasets"):
            return _load_dataset_split(match.group(1), match.group(2))
    raise DataError(
        f"no input at {path}: not a file, a folder, or NAME[:ROOT] of a registered dataset "
        "(see 'cifarbudget list datasets')"
    )


def is_pickle(path: Path | str) -> bool:
    """Whether :func:`load_inputs` would unpickle ``path`` (which runs code from the file)."""
    p = Path(path).expanduser()
    try:
        return p.is_file() and _file_kind(p) == "pickle"
    except (DataError, OSError):
        return False


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    if suffix in (".npy", ".npz"):
        return suffix[1:]
    if not suffix:  # CIFAR's own batches (test_batch) have no extension: sniff the magic bytes
        with path.open("rb") as f:
            head = f.read(6)
        if head.startswith(b"\x80"):
            return "pickle"
        if head == b"\x93NUMPY":
            return "npy"
        if head.startswith(b"PK\x03\x04"):
            return "npz"
        raise DataError(f"{path}: unknown file format (not a pickle, .npy or .npz)")
    raise DataError(
        f"{path}: unknown extension {suffix!r}; expected {', '.join(PICKLE_SUFFIXES)}, .npy, .npz, "
        f"an image ({', '.join(IMAGE_EXTENSIONS)}) or a folder of images"
    )


def _load_pickle(path: Path) -> Inputs:
    try:
        with path.open("rb") as f:
            obj = pickle.load(f, encoding="bytes")  # runs code from the file: trusted files only
    except Exception as exc:  # a corrupt pickle raises almost anything
        raise DataError(f"cannot read pickle {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict with 'data' (and 'ids'), got {type(obj).__name__}")
    data = _pick(obj, ("data",), path, required=True)
    images = _images_from_array(data, f"{path}['data']")
    ids = _ids(_pick(obj, ("ids",), path), len(images), path)
    # CIFAR-10's batches say "labels"; CIFAR-100's say "fine_labels" (and "coarse_labels", the 20
    # superclasses, which are not what a 100-class model predicts)
    labels = _labels(_pick(obj, ("labels", "fine_labels"), path), len(images), path)
    return Inputs(images, ids, labels, source=str(path), kind="pickle")


def _load_npy(path: Path) -> Inputs:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    images = _images_from_array(data, str(path))
    return Inputs(images, _ids(None, len(images), path), source=str(path), kind="npy")


def _load_npz(path: Path) -> Inputs:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    data = _pick(arrays, _DATA_KEYS, path, required=True)
    images = _images_from_array(data, str(path))
    ids = _ids(_pick(arrays, ("ids",), path), len(images), path)
    labels = _labels(_pick(arrays, _LABEL_KEYS, path), len(images), path)
    return Inputs(images, ids, labels, source=str(path), kind="npz")


def _pick(mapping: dict[Any, Any], names: tuple[str, ...], path: Path, required: bool = False) -> Any:
    """The one value stored under any of ``names`` (str or bytes keys); error when several are."""
    found = [key for name in names for key in (name, name.encode()) if key in mapping]
    if len(found) > 1:
        shown = ", ".join(repr(k) for k in found)
        raise DataError(f"{path}: ambiguous, it holds several of {shown}; keep one")
    if not found:
        if required:
            keys = ", ".join(repr(k) for k in list(mapping)[:8])
            raise DataError(f"{path}: no {' / '.join(repr(n) for n in names)} key (keys: {keys})")
        return None
    return mapping[found[0]]


def _images_from_array(data: Any, where: str) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` from ``N x 3072`` (CIFAR rows), NHWC or NCHW uint8 arrays."""
    if not isinstance(data, np.ndarray):
        raise DataError(f"{where}: expected a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 (0..255), got {data.dtype}")
    shape = data.shape
    if data.ndim == 2 and shape[1] == 3 * 32 * 32:
        data = data.reshape(-1, 3, 32, 32)
    elif data.ndim == 4 and shape[3] == 3 and shape[1] != 3:
        data = data.transpose(0, 3, 1, 2)
    elif data.ndim == 4 and shape[1] == 3 and shape[3] != 3:
        pass
    elif data.ndim == 4 and shape[1] == 3 and shape[3] == 3:
        raise DataError(f"{where}: shape {shape} is ambiguous (channels first or last?)")
    else:
        raise DataError(f"{where}: shape {shape} is not N x 3072, N x H x W x 3 or N x 3 x H x W")
    if data.shape[0] == 0:
        raise DataError(f"{where}: no images")
    return torch.from_numpy(np.ascontiguousarray(data))


def _ids(raw: Any, n: int, path: Path) -> list[str]:
    """Ids as text: from the file (ints, str or bytes), or ``1..N`` when it has none."""
    if raw is None:
        return [str(i) for i in range(1, n + 1)]
    values = np.asarray(raw)
    if values.ndim != 1 or values.dtype.kind not in "iuSUO":
        raise DataError(
            f"{path}: ids must be a 1-D list of integers or strings, got {values.dtype} {values.shape}"
        )
    if len(values) != n:
        raise DataError(f"{path}: {len(values)} ids for {n} images")
    ids = [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]
    _check_unique(ids, f"{path}: duplicate id")
    return ids


def _check_unique(ids: list[str], message: str) -> None:
    if len(set(ids)) != len(ids):
        dup = next(i for i, count in Counter(ids).items() if count > 1)
        raise DataError(f"{message} {dup!r}")


def _labels(raw: Any, n: int, path: Path) -> torch.Tensor | None:
    if raw is None:
        return None
    values = np.asarray(raw)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise DataError(f"{path}: labels must be a 1-D list of integers, got {values.dtype} {values.shape}")
    if len(values) != n:
        raise DataError(f"{path}: {len(values)} labels for {n} images")
    if n and values.min() < 0:
        raise DataError(f"{path}: negative labels")
    return torch.from_numpy(values.astype(np.int64))


def _image_files(folder: Path) -> list[Path]:
    files = [
        f
        for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda f: natural_key(f.name))


def _load_folder(folder: Path) -> Inputs:
    """A folder of images (ids: file stems) or of class subfolders of images (labeled)."""
    top = _image_files(folder)
    subdirs = sorted(
        (d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: natural_key(d.name),
    )
    classes = {d.name: files for d in subdirs if (files := _image_files(d))}
    if top and classes:
        raise DataError(f"{folder}: ambiguous, it holds images and class folders of images; keep one")
    if top:
        ids = [f.stem for f in top]
        _check_unique(ids, f"{folder}: two images with the id (file stem)")
        return Inputs(_decode_files(top, folder), ids, source=str(folder), kind="folder")
    if classes:
        names = list(classes)
        files = [f for name in names for f in classes[name]]
        labels = torch.tensor([i for i, name in enumerate(names) for _ in classes[name]], dtype=torch.long)
        ids = [f"{f.parent.name}/{f.stem}" for f in files]
        _check_unique(ids, f"{folder}: two images with the id")
        images = _decode_files(files, folder)
        return Inputs(images, ids, labels, names, source=str(folder), kind="imagefolder")
    hint = ""
    if any((folder / split).is_dir() for split in ("train", "test")):
        hint = f"; for a dataset root with train/ and test/, pass imagefolder:{folder}"
    raise DataError(
        f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no class folders of images{hint}"
    )


def _load_dataset_split(name: str, root: str | None) -> Inputs:
    from cifarbudget.plugins import get_registry

    factory = get_registry("datasets").get(name).factory
    folder = Path(root).expanduser() if root else default_data_dir()
    try:
        raw = factory(folder, train=False, download=False)
    except DataError as exc:  # the hint names `run`'s --data-dir; here the folder is given as NAME:ROOT
        hint = str(exc).replace("pass --data-dir", f"give the input as {name}:ROOT")
        raise DataError(hint) from None
    split = as_split(raw, name, "test")  # checks dtype, shape and labels
    source = split.source
    ids = [str(i) for i in range(1, len(split) + 1)]
    return Inputs(
        split.images,
        ids,
        split.labels,
        split.classes,
        source,
        kind="dataset",
        dataset=name,
        root=str(folder.resolve()),
    )


def _decode_files(files: list[Path], folder: Path) -> torch.Tensor:
    return decode_images([(str(f), f.read_bytes) for f in files], where=str(folder))


def check_inputs(data: Inputs) -> None:
    """Raise a one-line DataError unless ``data`` is a non-empty uint8 batch with one id (and label) per image."""
    where = data.source or "the input"
    images = data.images
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise DataError(
            f"{where}: images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if not len(data):
        raise DataError(f"{where}: no images")
    if len(data.ids) != len(data):
        raise DataError(f"{where}: {len(data.ids)} ids for {len(data)} images")
    if data.labels is not None and data.labels.shape != (len(data),):
        raise DataError(f"{where}: {len(data.labels)} labels for {len(data)} images")

"""Predictions of a trained run on new images: input formats, inference, the submission CSV.

:func:`load_inputs` reads images (and ids, and labels when present) from a Kaggle-style pickle,
a ``.npy``/``.npz`` array, a folder of images, an ImageFolder-style folder of class subfolders, or
the test split of a registered dataset. :func:`predict` rebuilds the model of a run from its
record, loads the weights the run evaluated (the EMA weights when the run used EMA) and runs the
trainer's final evaluation on them: same normalisation, precision, batch size and TTA, so that
on a run's own test split the accuracy equals the recorded one.

Pickle files run code on load: only read pickles you trust (``allow_pickle=False`` refuses them).
"""

from __future__ import annotations

import csv
import io
import pickle
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarbudget.data.core import DeviceSplit, Split, default_data_dir
from cifarbudget.engine import CHECKPOINT, EngineOptions, autocast, evaluate
from cifarbudget.errors import CifarBudgetError, DataError, RunError
from cifarbudget.io import atomic_write_bytes, atomic_write_text
from cifarbudget.registry import natural_key
from cifarbudget.results import RESULT_FILE, RunResult, load_result

# The trainer's final evaluation uses engine.evaluate's default batch size; using the same one
# keeps every forward pass the same shape, hence the same kernels and the same numbers.
DEFAULT_BATCH_SIZE: int = (evaluate.__kwdefaults__ or {}).get("batch_size", 1000)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".p")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
CSV_HEADER = ("ID", "Labels")
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
    kind: str = ""  # pickle | npy | npz | folder | imagefolder | dataset
    dataset: str | None = None  # the registered dataset, for a split spec

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Predictions:
    """What :func:`predict` returns: one predicted class per id, probabilities, and accuracy if labeled."""

    run_id: str
    ids: list[str]
    indices: np.ndarray  # int64 (N,): predicted class indices
    probs: np.ndarray  # float32 (N, C): softmax of the (TTA-averaged) logits
    classes: list[str]  # the run's class names
    tta: str  # the TTA policy used ("none" for none)
    device: str
    targets: np.ndarray | None = None  # int64 (N,): true classes, when the input is labeled
    accuracy: float | None = None  # of ``indices``, i.e. with ``tta``
    indices_no_tta: np.ndarray | None = None  # labeled input with TTA on: the plain predictions too
    accuracy_no_tta: float | None = None
    recorded_accuracy: float | None = None  # on the run's own test split: what the run recorded
    recorded_accuracy_no_tta: float | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labels(self) -> list[str]:
        """The predicted class names (the index as text where the run has no name for it)."""
        return [self.classes[i] if i < len(self.classes) else str(i) for i in self.indices.tolist()]

    def csv_text(self, labels: str = "name", header: Sequence[str] = CSV_HEADER) -> str:
        """The submission: ``header`` (``ID,Labels``), then one row per id in input order."""
        if labels not in ("name", "index"):
            raise DataError(f"labels must be 'name' or 'index', got {labels!r}")
        if len(header) != 2 or not all(header):
            raise DataError(f"the CSV header needs two column names, got {tuple(header)!r}")
        values = self.labels if labels == "name" else [str(i) for i in self.indices.tolist()]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(self.ids, values, strict=True))
        return buffer.getvalue()

    def write_csv(self, path: Path | str, labels: str = "name", header: Sequence[str] = CSV_HEADER) -> None:
        """Write :meth:`csv_text` atomically."""
        atomic_write_text(path, self.csv_text(labels, header))

    def save_probs(self, path: Path | str) -> None:
        """Save the ``(N, C)`` float32 probabilities as ``.npy``, atomically."""
        buffer = io.BytesIO()
        np.save(buffer, self.probs, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())

    def confusion_matrix(self, tta: bool = True) -> list[list[int]]:
        """Rows: true class, columns: predicted (as ``result.json`` records it); needs labels."""
        from cifarbudget.trainer import confusion_matrix

        preds = self.indices if tta or self.indices_no_tta is None else self.indices_no_tta
        if self.targets is None:
            raise DataError("the input has no labels: no confusion matrix")
        n = self.probs.shape[1]
        return confusion_matrix(torch.from_numpy(preds), torch.from_numpy(self.targets), n)


# --- inputs -------------------------------------------------------------------------------------
def load_inputs(path: Path | str, *, allow_pickle: bool = True) -> Inputs:
    """Read images to predict from ``path``; raise a one-line :class:`DataError` on anything odd.

    ``path`` is a pickle (``.pkl``/``.pickle``/``.p``, or an extension-less file such as CIFAR's
    ``test_batch``) holding a dict with ``data`` (and ``ids``, ``labels``; bytes or str keys), a
    ``.npy`` or ``.npz`` array file, a folder of images, a folder of class subfolders of images, or
    ``NAME[:ROOT]``: the test split of the registered dataset NAME (ROOT defaults to the data dir).
    Arrays must be uint8 ``N x 3072`` (CIFAR's rows: 1024 red, 1024 green, 1024 blue values),
    ``N x H x W x 3`` or ``N x 3 x H x W``. Without ids in the file, the ids are ``1..N``.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return _load_folder(p)
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
        f"{path}: unknown extension {suffix!r}; expected {', '.join(PICKLE_SUFFIXES)}, .npy, .npz "
        "or a folder of images"
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
    labels = _labels(_pick(obj, ("labels",), path), len(images), path)
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
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
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
        return Inputs(_decode_all(top, folder), ids, source=str(folder), kind="folder")
    if classes:
        names = list(classes)
        files = [f for name in names for f in classes[name]]
        labels = torch.tensor([i for i, name in enumerate(names) for _ in classes[name]], dtype=torch.long)
        ids = [f"{f.parent.name}/{f.stem}" for f in files]
        _check_unique(ids, f"{folder}: two images with the id")
        images = _decode_all(files, folder)
        return Inputs(images, ids, labels, names, source=str(folder), kind="imagefolder")
    hint = ""
    if any((folder / split).is_dir() for split in ("train", "test")):
        hint = f"; for a dataset root with train/ and test/, pass imagefolder:{folder}"
    raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) and no class folders of images{hint}")


def _decode_all(files: list[Path], folder: Path) -> torch.Tensor:
    import os
    from concurrent.futures import ThreadPoolExecutor

    from cifarbudget.data.imagefolder import _decode

    items = [("", str(f), f.read_bytes) for f in files]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        arrays = list(pool.map(_decode, items, chunksize=256))
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) != 1:
        raise DataError(f"{folder}: images have different sizes {shapes[:3]}; resize them to one size")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _load_dataset_split(name: str, root: str | None) -> Inputs:
    from cifarbudget.plugins import get_registry

    factory = get_registry("datasets").get(name).factory
    raw = factory(Path(root).expanduser() if root else default_data_dir(), train=False, download=False)
    if not all(hasattr(raw, a) for a in ("images", "labels", "classes")):
        raise DataError(f"dataset {name!r} returned {type(raw).__name__}, not a split")
    source = getattr(raw, "source", "") or f"{name}:test"
    split = Split(raw.images, raw.labels, list(raw.classes), source)  # checks dtype, shape and labels
    ids = [str(i) for i in range(1, len(split) + 1)]
    return Inputs(split.images, ids, split.labels, split.classes, source, kind="dataset", dataset=name)


# --- the run ------------------------------------------------------------------------------------
def load_run(run_or_checkpoint: Path | str) -> tuple[RunResult, Path]:
    """The record of a run and its checkpoint, from a run folder or a file inside one."""
    path = Path(run_or_checkpoint).expanduser()
    if not path.exists():
        raise RunError(f"no run at {path}: pass a run folder (result.json + {CHECKPOINT}) or its checkpoint")
    if path.is_dir():
        run_dir, checkpoint = path, path / CHECKPOINT
    elif path.name == RESULT_FILE:
        run_dir, checkpoint = path.parent, path.parent / CHECKPOINT
    else:
        run_dir, checkpoint = path.parent, path
    if not (run_dir / RESULT_FILE).is_file():
        raise RunError(f"{run_dir} is not a run folder: it has no {RESULT_FILE}")
    try:
        result = load_result(run_dir)
    except CifarBudgetError as exc:
        raise RunError(str(exc)) from None
    if not checkpoint.is_file():
        raise RunError(f"run {result.run_id} has no checkpoint ({checkpoint} is missing)")
    if result.status in ("diverged", "failed"):
        raise RunError(f"run {result.run_id} {result.status}: {result.error or 'its weights are not usable'}")
    return result, checkpoint


def load_model(result: RunResult, checkpoint: Path) -> nn.Module:
    """The run's model with the weights it was evaluated with (EMA weights when it used EMA)."""
    from cifarbudget.api import create_model

    spec = result.spec
    classes = result.data.get("classes") or []
    num_classes = int(spec.get("num_classes") or len(classes))
    if not num_classes:
        raise RunError(f"run {result.run_id}: its record has neither num_classes nor the class names")
    model = create_model(spec["model"], num_classes=num_classes)
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"cannot read checkpoint {checkpoint}: {type(exc).__name__}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise RunError(f"{checkpoint} is not a cifarbudget checkpoint")
    if ckpt.get("run_id") not in (None, result.run_id):
        raise RunError(f"{checkpoint} belongs to run {ckpt['run_id']}, not to {result.run_id}")
    state = ckpt["model"]
    if float(spec.get("ema") or 0) > 0:  # the engine evaluates the EMA copy (ModelEmaV3.module)
        if not ckpt.get("ema"):
            raise RunError(f"run {result.run_id} used EMA but {checkpoint} holds no EMA weights")
        state = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RunError(
            f"{checkpoint} does not fit model {spec['model']!r} as registered now: {first}"
        ) from None
    return model.eval()


# --- inference ----------------------------------------------------------------------------------
@torch.no_grad()
def _infer(
    model: nn.Module,
    images: torch.Tensor,
    normalizer: DeviceSplit,
    options: EngineOptions,
    policy: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None,
    batch_size: int,
    bar: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted indices, float32 logits) on the CPU, batch by batch as ``engine.evaluate`` does."""
    preds, logits_all = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size].to(options.device)
        x = normalizer.normalize(chunk)
        with autocast(options):
            logits = policy(model, x) if policy is not None else model(x)
        preds.append(logits.argmax(dim=1).cpu())
        logits_all.append(logits.float().cpu())
        bar.update(len(chunk))
    return torch.cat(preds), torch.cat(logits_all)


def _check_inputs(data: Inputs) -> None:
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


def _map_labels(inputs: Inputs, classes: list[str], num_classes: int) -> np.ndarray | None:
    """The input's labels as indices into the run's classes (matched by name where the input names them)."""
    if inputs.labels is None:
        return None
    labels = inputs.labels.long()
    if inputs.classes is not None and list(inputs.classes) != list(classes[: len(inputs.classes)]):
        index = {name: i for i, name in enumerate(classes)}
        unknown = [c for c in inputs.classes if c not in index]
        if unknown:
            raise DataError(f"{inputs.source}: class {unknown[0]!r} is not one of the run's classes")
        labels = torch.tensor([index[c] for c in inputs.classes], dtype=torch.long)[labels]
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{inputs.source}: labels outside 0..{num_classes - 1}")
    return labels.numpy()


def _own_test_split(inputs: Inputs, result: RunResult) -> bool:
    """Whether ``inputs`` is the test split the run evaluated (same dataset, source and size)."""

    def strip(source: str) -> str:
        return source.removesuffix(":train").removesuffix(":test")

    data = result.data
    return (
        inputs.kind == "dataset"
        and inputs.dataset == result.spec.get("dataset")
        and strip(inputs.source) == strip(str(data.get("source", "")))
        and len(inputs) == data.get("n_test")
    )


def predict(
    run_or_checkpoint: Path | str,
    inputs: Inputs | Path | str,
    *,
    tta: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Predictions:
    """Predict the class of every image in ``inputs`` with the run at ``run_or_checkpoint``.

    ``tta``: a registered TTA policy, ``"none"``, or ``None`` for the run's own. ``batch_size``
    defaults to the trainer's evaluation batch size; ``device`` to cuda, mps or cpu; ``amp``
    (bf16 autocast) to on for CUDA, as in training. For labeled inputs the accuracy is computed
    (and, with TTA, the accuracy without it); on the run's own test split both equal the recorded
    test accuracies when the device and precision match the run's.
    """
    from cifarbudget.plugins import get_registry
    from cifarbudget.runner import select_device

    say = log or (lambda message: None)
    result, checkpoint = load_run(run_or_checkpoint)
    if result.status != "finished":
        epochs = result.spec.get("epochs")
        say(
            f"warning: run {result.run_id} is {result.status} ({len(result.history)} of {epochs} epochs); "
            "predicting with its last checkpoint"
        )
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1 (got {batch_size})")
    tta_name = result.spec.get("tta", "none") if tta is None else tta
    policy = get_registry("tta").create(tta_name) if tta_name != "none" else None
    data = inputs if isinstance(inputs, Inputs) else load_inputs(inputs)
    _check_inputs(data)
    model = load_model(result, checkpoint)

    dev = select_device(device)
    # mirror the run's precision and memory format when predicting on the kind of device it ran on
    recorded = result.manifest.get("engine") or {}
    same_kind = str(result.manifest.get("device", "")).split(":")[0] == dev.type
    run_amp = recorded.get("amp", dev.type == "cuda") if same_kind else dev.type == "cuda"
    run_cl = recorded.get("channels_last", dev.type == "cuda") if same_kind else dev.type in ("cuda", "cpu")
    options = EngineOptions(device=dev, amp=run_amp if amp is None else amp, channels_last=run_cl)
    if dev.type == "cuda":  # as the trainer sets them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if options.channels_last else torch.preserve_format
    model = model.to(dev, memory_format=memory_format)
    classes = list(result.data.get("classes") or [])
    num_classes = int(result.spec.get("num_classes") or len(classes))
    targets = _map_labels(data, classes, num_classes)
    mean, std = result.data.get("mean"), result.data.get("std")
    if not mean or not std:
        raise RunError(f"run {result.run_id}: its record has no normalisation mean/std")
    empty = Split(torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.long), classes)
    normalizer = DeviceSplit.from_split(empty, dev, mean, std, options.channels_last)

    passes = 2 if policy is not None and targets is not None else 1
    from tqdm.auto import tqdm

    bar = tqdm(
        total=passes * len(data),
        disable=not progress or len(data) <= batch_size,
        unit="img",
        desc="predict",
        dynamic_ncols=True,
        leave=False,
    )
    try:
        indices, logits = _infer(model, data.images, normalizer, options, policy, batch_size, bar)
        plain = None
        if passes == 2:
            plain, _ = _infer(model, data.images, normalizer, options, None, batch_size, bar)
    except RuntimeError as exc:
        size = tuple(data.images.shape[-2:])
        if size == (32, 32):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"model {result.spec['model']!r} cannot take {size[0]}x{size[1]} images: {first}"
        ) from None
    finally:
        bar.close()

    out = Predictions(
        run_id=result.run_id,
        ids=list(data.ids),
        indices=indices.numpy().astype(np.int64),
        probs=torch.softmax(logits, dim=1).numpy(),
        classes=classes,
        tta=tta_name,
        device=str(dev),
        targets=targets,
    )
    if targets is not None:
        n = len(targets)
        out.accuracy = int((out.indices == targets).sum()) / n
        if plain is not None:
            out.indices_no_tta = plain.numpy().astype(np.int64)
            out.accuracy_no_tta = int((out.indices_no_tta == targets).sum()) / n
        if _own_test_split(data, result) and result.status == "finished":
            final = result.final
            out.recorded_accuracy_no_tta = final.get("test_acc")
            if tta_name == "none":
                out.recorded_accuracy = final.get("test_acc")
            elif tta_name == result.spec.get("tta"):
                out.recorded_accuracy = final.get("test_acc_tta")
    return out

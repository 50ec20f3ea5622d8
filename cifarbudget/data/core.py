"""The in-memory split, the stratified validation split and the on-device batch iterator.

A split is one uint8 tensor ``(N, 3, H, W)`` plus int64 labels. For training it is moved to the
training device once; shuffling, batching and normalisation then happen there as tensor ops, so
there is no DataLoader, no worker process and no per-image Python on the hot path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cifarbudget.errors import DataError


@dataclass
class Split:
    """One split of a dataset: ``images`` uint8 (N, 3, H, W), ``labels`` int64 (N,), class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = ""  # where it came from, for the run's record

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise DataError(
                f"dataset split {self.source or ''}: images must be uint8 (N, 3, H, W), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"dataset split {self.source or ''}: {len(self.labels)} labels for {len(self.images)} images"
            )
        self.labels = self.labels.long()
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"dataset split {self.source or ''}: labels outside 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def as_split(raw: object, dataset: str, which: str) -> Split:
    """What a dataset factory returned, as a checked :class:`Split`: any object with ``images``,
    ``labels`` and ``classes`` (the plugin contract, e.g. a ``SimpleNamespace``) is converted;
    ``source`` defaults to ``"<dataset>:<which>"``.

    ``images``: a uint8 tensor ``(N, 3, H, W)``, or a numpy uint8 array of that shape (converted);
    ``labels``: an integer tensor or integer numpy array ``(N,)`` (float labels are refused, not
    truncated); ``classes``: a list or tuple of class names (``str``). Anything else is a one-line
    :class:`DataError` naming the dataset and the split."""
    if isinstance(raw, Split):
        return raw
    where = f"dataset {dataset!r} ({which} split)"
    if not all(hasattr(raw, a) for a in ("images", "labels", "classes")):
        raise DataError(f"{where} returned {type(raw).__name__}, not a split (images, labels, classes)")
    images = _as_tensor(raw.images, "images", where)  # type: ignore[attr-defined]
    labels = _as_tensor(raw.labels, "labels", where)  # type: ignore[attr-defined]
    classes = raw.classes  # type: ignore[attr-defined]
    if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
        if isinstance(classes, list | tuple):
            name = next(c for c in classes if not isinstance(c, str))
            bad = f"the name {name!r} ({type(name).__name__})"
        else:
            bad = type(classes).__name__
        raise DataError(f"{where}: classes must be a list of class names (str), got {bad}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        hint = (
            "; channels last? permute to (N, 3, H, W)" if images.ndim == 4 and images.shape[-1] == 3 else ""
        )
        raise DataError(
            f"{where}: images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}{hint}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise DataError(
            f"{where}: labels must be integer class indices, got {labels.dtype} (float labels are not rounded)"
        )
    if labels.shape != (images.shape[0],):
        raise DataError(
            f"{where}: labels of shape {tuple(labels.shape)} for {images.shape[0]} images; "
            f"need one per image, shape ({images.shape[0]},)"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise DataError(f"{where}: labels outside 0..{len(classes) - 1} ({len(classes)} classes)")
    source = str(getattr(raw, "source", "") or f"{dataset}:{which}")
    return Split(images, labels, list(classes), source)


def _as_tensor(value: object, what: str, where: str) -> torch.Tensor:
    """A torch tensor as it is, a numpy array converted (numeric dtypes only); else a DataError."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and (value.dtype.kind in "biuf"):
        return torch.from_numpy(np.ascontiguousarray(value))
    kind = f"numpy {value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
    need = "a uint8" if what == "images" else "an integer"
    raise DataError(f"{where}: {what} must be {need} torch tensor or numpy array, got {kind}")


def default_data_dir() -> Path:
    """``$CIFARBUDGET_DATA`` or ``~/.cache/cifarbudget/data``."""
    env = os.environ.get("CIFARBUDGET_DATA")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarbudget" / "data"


def stratified_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): ``val_size`` images, class proportions kept, fixed by ``seed``.

    Each class contributes ``round(val_size * class_share)`` images (largest remainders fill
    the rounding gap), chosen by a permutation drawn from a generator seeded with ``seed``.
    """
    n = len(labels)
    if not 0 <= val_size < n:
        raise DataError(f"--val-size {val_size} must be between 0 and the training set size - 1 ({n - 1})")
    if val_size == 0:
        return torch.arange(n), torch.empty(0, dtype=torch.long)
    labels = labels.cpu()
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * val_size / n
    take = exact.floor().long()
    remainder = int(val_size - take.sum())
    if remainder:
        order = torch.argsort(exact - take.double(), descending=True, stable=True)
        take[order[:remainder]] += 1
    gen = torch.Generator().manual_seed(seed)
    val_parts = []
    for cls, k in zip(classes.tolist(), take.tolist(), strict=True):
        idx = torch.nonzero(labels == cls).flatten()
        val_parts.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    val = torch.cat(val_parts).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).flatten(), val


def subset(split: Split, indices: torch.Tensor) -> Split:
    return Split(split.images[indices], split.labels[indices], split.classes, split.source)


def normalization_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in 0..1 units) of a uint8 image tensor, computed in chunks."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    for chunk in images.split(4096):
        x = chunk.double() / 255
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


@dataclass
class DeviceSplit:
    """A split resident on the training device, yielding normalised float batches."""

    images: torch.Tensor  # uint8 (N, 3, H, W) on device
    labels: torch.Tensor  # int64 (N,) on device
    mean: torch.Tensor = field(repr=False)  # (1, 3, 1, 1) float on device, 0..255 units
    std: torch.Tensor = field(repr=False)
    channels_last: bool = False
    _laid_out: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_split(
        cls,
        split: Split,
        device: torch.device,
        mean: list[float],
        std: list[float],
        channels_last: bool = False,
    ) -> DeviceSplit:
        return cls.from_tensors(split.images, split.labels, device, mean, std, channels_last)

    @classmethod
    def from_tensors(
        cls,
        images: torch.Tensor,
        labels: torch.Tensor,
        device: torch.device,
        mean: list[float],
        std: list[float],
        channels_last: bool = False,
    ) -> DeviceSplit:
        """Images and labels (``-1`` for unknown) that need not form a dataset :class:`Split`.

        With ``channels_last`` the uint8 images are kept channels_last too (:meth:`laid_out`): a
        batch is then normalised without changing its layout.
        """
        m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        split = cls(images.to(device), labels.long().to(device), m, s, channels_last)
        return split.laid_out(channels_last=True) if channels_last else split

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def laid_out(self, *, channels_last: bool) -> DeviceSplit:
        """This split with its uint8 images kept channels_last (each image one ``(H, W, C)`` block)
        or contiguous (``(C, H, W)``): itself when they are already, else a split with a copy of the
        images in that layout (the labels and statistics shared). The values and every batch's
        values are the same either way.

        Why it matters: a channels_last split's normalised batches are channels_last, and turning a
        contiguous uint8 batch into one is a transposing copy, about 40% of the normalisation on
        the CPU; a channels_last uint8 batch only changes type. But the raw-stage augmentations
        may prefer the other layout (reflect-padding a channels_last uint8 batch is slow on the
        CPU): the engine lays the training split out for its pipeline
        (:meth:`~cifarbudget.augment.pipeline.Compose.preferred_uint8_layout`).
        """
        layout = torch.channels_last if channels_last else torch.contiguous_format
        if self.images.dim() != 4 or self.images.is_contiguous(memory_format=layout):
            return self
        return DeviceSplit(
            self.images.contiguous(memory_format=layout), self.labels, self.mean, self.std, self.channels_last
        )

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The uint8 images at ``index`` (int64, on the device), in the layout the split keeps them:
        a channels_last split's are gathered as whole ``(H, W, C)`` images (``index_select`` on
        the ``(N, C, H, W)`` view of channels_last memory would write a contiguous batch, value by
        value)."""
        images = self.images
        if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last):
            return images.permute(0, 2, 3, 1).index_select(0, index).permute(0, 3, 1, 2)
        return images.index_select(0, index)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``(images - mean) / std`` in float32 (channels_last when the split is), in one float copy.

        The same two float32 operations as the plain broadcast, so the values are identical, done
        in place on the copy with the statistics laid out like the batch: a ``(1, 3, 1, 1)``
        operand broadcast over a channels_last batch leaves the kernels an inner loop of 3 values
        (about 6x slower on the CPU, measured with the input-pipeline benchmark's batches).
        """
        x = images.float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        mean, std = self._stats_like(x)
        return x.sub_(mean).div_(std)

    def _stats_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean`` and ``std`` shaped to broadcast over ``x`` with long inner loops."""
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return self.mean, self.std
        width = x.shape[3]
        if width not in self._laid_out:  # (1, C, 1, W) channels_last: channel and column coalesce
            c = self.mean.shape[1]
            self._laid_out[width] = tuple(  # type: ignore[assignment]
                v.view(1, 1, 1, c).expand(1, 1, width, c).contiguous().permute(0, 3, 1, 2)
                for v in (self.mean, self.std)
            )
        return self._laid_out[width]

    def batches(
        self, batch_size: int, *, shuffle: bool, drop_last: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised ``(images, labels)`` batches; shuffling uses torch's global RNG on the device."""
        n = len(self)
        if shuffle:
            for idx in self.index_batches(batch_size, shuffle=True, drop_last=drop_last):
                yield self.normalize(self.take(idx)), self.labels[idx]
            return
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            rows = slice(start, min(start + batch_size, n))
            yield self.normalize(self.images[rows]), self.labels[rows]

    def index_batches(self, batch_size: int, *, shuffle: bool, drop_last: bool) -> Iterator[torch.Tensor]:
        """The positions (int64, on the device) of each batch's images: the engine's training order.

        Shuffled with one ``torch.randperm`` per epoch from torch's global RNG on the device, so
        the order is fixed by the seed and restored exactly on resume.
        """
        n = len(self)
        device = self.labels.device
        order = torch.randperm(n, device=device) if shuffle else torch.arange(n, device=device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield order[start : start + batch_size]

    def steps(self, batch_size: int, drop_last: bool) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

"""The augmentation pipeline: the protocol an augmentation implements, :class:`Compose`, soft targets.

An augmentation is called as ``aug(images, targets) -> (images, targets)`` on a whole batch on
the training device, with ``targets`` float soft labels ``(N, K)``. It runs at one of two
*stages*, given by its optional ``stage`` attribute:

- ``"normalized"`` (the default): ``images`` is the normalised float batch the model sees.
- ``"uint8"``: ``images`` is the raw uint8 batch ``(N, 3, H, W)``, before normalisation; for
  operations defined on pixel values (AutoAugment's posterize, solarize, equalize, ...). It must
  return uint8 images.
- ``"any"``: an operation that only moves pixels (a crop, a flip) and gives the same normalised
  result on either batch.

:class:`Compose` runs the uint8-stage augmentations first (in their order), normalises, then runs
the others (in their order). The ``"any"``-stage augmentations at the head of the others run
before normalising, on the uint8 batch (a quarter of the bytes): the order is unchanged, only
normalisation moves after them. The engine hands it raw uint8 batches; called on a float batch it
runs only the normalised stage (and refuses a pipeline that has uint8-stage augmentations).

The engine hands the uint8 batches over in the layout their training split keeps: channels_last
(each image one ``(H, W, C)`` block) or contiguous, the same values either way, so a raw-stage
augmentation must accept both. Normalising a channels_last uint8 batch into the channels_last float
batch the model takes (the default on the CPU and on CUDA) changes only the type; a contiguous one
is transposed as well. An augmentation that runs on the uint8 batch and is at least as fast on a
channels_last one says ``uint8_layout = "channels_last"``; the split is kept channels_last when
all of them say so (:meth:`Compose.preferred_uint8_layout`), contiguous otherwise (reflect padding,
for one, is several times slower on a channels_last uint8 batch on the CPU).

An augmentation that needs to know *which* images it gets and in which epoch (the derandomized
alternating flip) sets ``wants_context = True``; it is then called as
``aug(images, targets, context=BatchContext(epoch, indices))``, where ``indices`` are the images'
positions in the training split (int64, on the device). Others never see the context.

An augmentation that transforms each image on its own (its result for an image depends only on
that image, its own random draws and, with ``wants_context``, its own index and the epoch) may say
so with ``per_image = True``. :meth:`Compose.batches` then runs it once on several batches
concatenated (the engine's ``aug_chunk`` setting), which pays its fixed cost per call once for all
of them; augmentations that mix images of a batch (CutMix, Mixup) keep ``per_image = False``, the
default, and run on each batch. The distribution of the augmented batches is the same; which
random draw each image gets is not.

Called as ``aug(images, targets)`` an augmentation never modifies ``images``. One that can do its
work in place may also have ``apply_(images, targets)``: the same transformation with the same
random draws, allowed to overwrite ``images`` and return them (or to return a new tensor of its
own). :class:`Compose` calls ``apply_`` on the float batches it owns: the one normalisation made,
and what ``apply_`` calls made of it; so a pipeline of in-place augmentations allocates and writes
one batch, not one per augmentation (:class:`InPlaceAugmentation` is the base of the builtin ones).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from cifarbudget.errors import RunError

STAGES = ("uint8", "normalized", "any")

__all__ = [
    "STAGES",
    "Augmentation",
    "BatchAugmentation",
    "BatchContext",
    "Compose",
    "InPlaceAugmentation",
    "check",
    "check_prob",
    "check_range",
    "compose",
    "soft_targets",
    "stage_of",
]


@runtime_checkable
class Augmentation(Protocol):
    """What the engine needs from an augmentation: a batch in, a batch out."""

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class BatchContext:
    """Where a training batch comes from, for augmentations with ``wants_context = True``.

    ``epoch``: 0-based epoch of the run; ``indices``: positions of the batch's images in the
    training split (int64 ``(N,)`` on the images' device), ``None`` when unknown.
    """

    epoch: int = 0
    indices: torch.Tensor | None = None


def check(ok: bool, message: str) -> None:
    """Raise a one-line :class:`RunError` with ``message`` unless ``ok`` (bad augmentation parameters)."""
    if not ok:
        raise RunError(message)


def is_real(value: object) -> bool:
    """A real number (an int or a float, not a bool, not text): what a numeric parameter must be."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_prob(name: str, p: float) -> float:
    check(is_real(p) and 0.0 <= p <= 1.0, f"{name}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_range(name: str, what: str, value: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    check(
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(is_real(v) for v in value)
        and lo <= value[0] <= value[1] <= hi,
        f"{name}: {what} must be a pair (low, high) with {lo} <= low <= high <= {hi}, got {value!r}",
    )
    return float(value[0]), float(value[1])


def stage_of(aug: object) -> str:
    """The stage an augmentation runs at (``"normalized"`` unless it says ``stage = "uint8"``)."""
    stage = getattr(aug, "stage", "normalized")
    check(stage in STAGES, f"augmentation {aug!r}: stage must be one of {STAGES}, got {stage!r}")
    return str(stage)


class BatchAugmentation:
    """Base class of the builtin augmentations: ``params()`` and a ``__repr__`` built from it."""

    name: str = "augmentation"
    stage: str = "normalized"
    uint8_layout: str = "contiguous"  # the uint8 layout it runs fastest on, when it runs on uint8
    wants_context: bool = False
    per_image: bool = False  # True: each image's result depends on that image alone (Compose.batches)

    def params(self) -> dict[str, Any]:
        """The settings of this augmentation (JSON-friendly), recorded in a run's result."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class InPlaceAugmentation(BatchAugmentation):
    """An augmentation that can overwrite its input: implement :meth:`transform`.

    ``aug(images, targets)`` leaves ``images`` alone; ``aug.apply_(images, targets)`` (what
    :class:`Compose` calls on a batch it owns) may write the result into ``images``. Both draw
    the same random numbers and give exactly the same values. Keyword arguments (the
    ``context`` of an augmentation with ``wants_context``) are passed on to :meth:`transform`.
    """

    def transform(
        self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmentation; with ``inplace`` it may write into ``images`` and return them."""
        raise NotImplementedError

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(images, targets, inplace=False, **kwargs)

    def apply_(
        self, images: torch.Tensor, targets: torch.Tensor, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(images, targets, inplace=True, **kwargs)


def _aug_name(aug: object) -> str:
    return str(getattr(aug, "name", None) or getattr(aug, "__name__", None) or type(aug).__name__)


def _aug_params(aug: object) -> dict[str, Any]:
    params = getattr(aug, "params", None)
    return dict(params()) if callable(params) else {}


class Compose(BatchAugmentation):
    """Apply several augmentations in order; ``params()`` lists each one's name and settings.

    The order matters and is kept within each stage: the usual one is ``crop-flip`` first, then a
    mixing augmentation (``cutmix`` or ``mixup``), then ``blur`` and ``erasing``/``cutout``.
    ``normalize`` maps a uint8 batch to the model's float input; it is needed only when the
    pipeline is called on uint8 images (the engine passes the training split's). It must return a
    new tensor: the augmentations with ``apply_`` overwrite it.
    """

    name = "compose"

    def __init__(
        self,
        augs: Iterable[Augmentation],
        names: Sequence[str] | None = None,
        *,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.augs = list(augs)
        for aug in self.augs:
            check(callable(aug), f"compose: {aug!r} is not callable")
        self.names = list(names) if names is not None else [_aug_name(a) for a in self.augs]
        check(len(self.names) == len(self.augs), "compose: one name per augmentation is needed")
        self.normalize = normalize
        self.uint8_augs = [a for a in self.augs if stage_of(a) == "uint8"]
        others = [a for a in self.augs if stage_of(a) != "uint8"]
        # the "any"-stage ones at the head of the others also run on the uint8 batch, after the
        # uint8 ones: the order in which everything runs is unchanged, only normalisation moves
        lead = 0
        while lead < len(others) and stage_of(others[lead]) == "any":
            lead += 1
        self.before_normalize_augs, self.float_augs = others[:lead], others[lead:]

    def preferred_uint8_layout(self) -> str:
        """The layout of uint8 batches this pipeline runs fastest on: ``"channels_last"`` when
        every augmentation that runs on the uint8 batch says so (``uint8_layout``), or when none
        runs there (only the normalisation sees it); ``"contiguous"`` when one prefers it or does
        not say."""
        raw = self.uint8_augs + self.before_normalize_augs
        fast = all(getattr(aug, "uint8_layout", "contiguous") == "channels_last" for aug in raw)
        return "channels_last" if fast else "contiguous"

    def params(self) -> dict[str, Any]:
        pairs = zip(self.names, self.augs, strict=True)
        return {"augs": [{"name": n, "params": _aug_params(a)} for n, a in pairs]}

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, context: BatchContext | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets, owned = self._normalized(images, targets, context)
        images, targets, _ = self._run_float(self.float_augs, images, targets, context, owned)
        return images, targets

    def chunkable(self) -> int:
        """How many of the normalised-stage augmentations :meth:`batches` runs on a whole chunk:
        those at the head of the pipeline with ``per_image = True``, when every augmentation before
        normalisation has it too (else 0, and with ``-1`` nothing runs on the chunk at all)."""
        if not all(getattr(a, "per_image", False) for a in self.uint8_augs + self.before_normalize_augs):
            return -1
        lead = 0
        while lead < len(self.float_augs) and getattr(self.float_augs[lead], "per_image", False):
            lead += 1
        return lead

    def batches(
        self, images: torch.Tensor, targets: torch.Tensor, contexts: Sequence[BatchContext]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augment several batches at once: ``images`` and ``targets`` are the batches concatenated,
        ``contexts`` each batch's context in order (``indices`` required: their lengths split the
        chunk). The augmentations before normalisation, normalisation and the normalised-stage
        ``per_image`` ones at the head (:meth:`chunkable`) run once on the whole chunk, with the
        chunk's indices; the rest run on each batch, with its own context. Yields each batch's
        ``(images, targets)``. With one batch the result and the random draws are exactly those of
        ``self(images, targets, context)``; with more, the same distribution of augmented batches,
        but each image gets other draws than it would per batch."""
        indices: list[torch.Tensor] = []
        for context in contexts:
            check(context.indices is not None, "compose.batches: every batch context needs its indices")
            assert context.indices is not None
            indices.append(context.indices)
        sizes = [len(i) for i in indices]
        check(
            sum(sizes) == images.shape[0] == targets.shape[0],
            f"compose.batches: the contexts' indices cover {sum(sizes)} images, the chunk has {images.shape[0]}",
        )
        lead = self.chunkable()
        if len(contexts) == 1 or lead < 0:  # one batch, or an augmentation before normalisation mixes images
            start = 0
            for size, context in zip(sizes, contexts, strict=True):
                yield self(images[start : start + size], targets[start : start + size], context)
                start += size
            return
        chunk = BatchContext(epoch=contexts[0].epoch, indices=torch.cat(indices))
        images, targets, owned = self._normalized(images, targets, chunk)
        images, targets, owned = self._run_float(self.float_augs[:lead], images, targets, chunk, owned)
        start = 0
        for size, context in zip(sizes, contexts, strict=True):
            # a slice of a chunk the pipeline owns is its own memory: in-place augmentations may write it
            batch, batch_targets, _ = self._run_float(
                self.float_augs[lead:],
                images[start : start + size],
                targets[start : start + size],
                context,
                owned,
            )
            yield batch, batch_targets
            start += size

    def _normalized(
        self, images: torch.Tensor, targets: torch.Tensor, context: BatchContext | None
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The stages up to normalisation; returns (images, targets, whether the pipeline owns images)."""
        if images.dtype == torch.uint8:
            for aug in self.uint8_augs + self.before_normalize_augs:
                images, targets = _apply(aug, images, targets, context)
                # the stage's contract: uint8 in, uint8 out (a float batch here would be normalised twice)
                if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8):
                    name = getattr(aug, "name", None) or type(aug).__name__
                    got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
                    raise RunError(
                        f"augmentation {name!r} runs at stage {stage_of(aug)!r} on the uint8 batch and "
                        f"must return uint8 images, but returned {got}"
                    )
            check(self.normalize is not None, "compose: a uint8 batch needs a normalize function")
            assert self.normalize is not None
            return self.normalize(images), targets, True  # a new batch, ours: apply_ may overwrite it
        check(
            not self.uint8_augs,
            "compose: this pipeline has uint8-stage augmentations; call it on the uint8 batch",
        )
        for aug in self.before_normalize_augs:  # stage "any": the same result on the normalised batch
            images, targets = _apply(aug, images, targets, context)
        return images, targets, False  # the caller's batch (or a view of it)

    @staticmethod
    def _run_float(
        augs: Sequence[Augmentation],
        images: torch.Tensor,
        targets: torch.Tensor,
        context: BatchContext | None,
        owned: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Normalised-stage augmentations in order, in place while the pipeline owns the batch."""
        for aug in augs:
            in_place = owned and callable(getattr(aug, "apply_", None))
            result, targets = _apply(aug, images, targets, context, in_place=in_place)
            # what apply_ returns is ours; what __call__ returns stays ours only if it is the same tensor
            owned, images = in_place or (owned and result is images), result
        return images, targets, owned

    def __len__(self) -> int:
        return len(self.augs)

    def __iter__(self) -> Iterator[Augmentation]:
        return iter(self.augs)

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(a) for a in self.augs) + "])"


def _apply(
    aug: Augmentation,
    images: torch.Tensor,
    targets: torch.Tensor,
    context: BatchContext | None,
    *,
    in_place: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    call = aug.apply_ if in_place else aug  # type: ignore[attr-defined]
    if getattr(aug, "wants_context", False):
        return call(images, targets, context=context or BatchContext())  # type: ignore[call-arg]
    return call(images, targets)


AugSpec = str | tuple[str, Mapping[str, Any]] | Augmentation


def compose(
    augs: Iterable[AugSpec], *, normalize: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Compose:
    """Chain augmentations given as registered names, ``(name, params)`` pairs or aug objects.

    ``compose(["crop-flip", ("cutmix", {"p": 1.0}), "erasing"])`` builds each named one through
    the augmentation registry (so plugin augmentations work too) and keeps the names for
    ``params()``. An empty list gives the identity (plus ``normalize`` on uint8 batches).
    """
    from cifarbudget.plugins import get_registry
    from cifarbudget.registry import call_with_params

    built: list[Augmentation] = []
    names: list[str] = []
    for spec in augs:
        if isinstance(spec, str):
            spec = (spec, {})
        if isinstance(spec, tuple):
            name, params = spec
            factory = get_registry("augmentations").get(name).factory
            built.append(call_with_params(f"augmentation {name!r}", factory, dict(params)))
            names.append(name)
        else:
            built.append(spec)
            names.append(_aug_name(spec))
    return Compose(built, names, normalize=normalize)


def soft_targets(
    labels: torch.Tensor, num_classes: int, smoothing: float = 0.0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One-hot targets ``(N, num_classes)`` for int labels ``(N,)``, optionally label-smoothed.

    With smoothing ``e`` each row is ``(1 - e) * one_hot + e / num_classes`` (the convention of
    ``torch.nn.CrossEntropyLoss(label_smoothing=e)`` and timm's ``mixup_target``); rows sum to 1.
    Built with timm's ``one_hot`` on the labels' device.
    """
    from timm.data.mixup import one_hot

    check(0.0 <= smoothing < 1.0, f"label smoothing must be in [0, 1), got {smoothing!r}")
    check(labels.ndim == 1, f"soft_targets expects labels of shape (N,), got shape {tuple(labels.shape)}")
    off = smoothing / num_classes
    return one_hot(labels, num_classes, on_value=1.0 - smoothing + off, off_value=off).to(dtype)

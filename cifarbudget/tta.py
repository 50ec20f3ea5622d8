"""Test-time augmentation policies (registered in :mod:`cifarbudget.builtin.tta`).

none, flip, flip-shift, multicrop (airbench's flip x translations), multicrop18 (flips x all
eight one-pixel translations), selective (extra views only
for the least-confident images, after hiverge's cifar10-speedrun) and paper5 (the reference
paper's 5-view policy).

A policy is called as ``policy(model, images) -> logits`` on a normalised float batch; it builds
``policy.n_views`` views of the batch with tensor ops, runs the model on all of them (on a GPU in
as few forward passes as ``max_batch`` allows, views concatenated along the batch dimension; on
a CPU one pass per view, which benchmarks/test_bench_tta.py measured to be faster there), and
averages the logits over the views, as airbench does. ``reduce="probs"`` averages the softmax
probabilities instead and returns their log (log-probabilities are valid logits: same argmax,
and cross-entropy on them is the NLL of the averaged prediction). A policy may weight its views
(``view_weights()``); the average is then the weighted one.

Cost: every policy counts the image-forward-passes it runs in ``policy.views_computed`` (an int,
cumulative over calls): ``n_views * N`` per call for the fixed policies, the views actually run
for ``selective``. Reading it before and after an evaluation gives the mean views per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError

__all__ = [
    "FlipShiftTTA",
    "FlipTTA",
    "MultiCrop18TTA",
    "MultiCropTTA",
    "NoTTA",
    "Paper5TTA",
    "SelectiveTTA",
    "TTAPolicy",
    "scipy_gaussian_blur",
]


class TTAPolicy:
    """Base class: subclasses define ``n_views`` and ``views(images)``; the rest is shared.

    :param reduce: ``"logits"`` (default) averages logits over views; ``"probs"`` returns the log
        of the mean softmax.
    :param max_batch: most images per forward pass; the views of a batch are concatenated and
        split into chunks of at most this many images (eval-mode BatchNorm makes chunking exact).

    ``views_computed`` counts the image-forward-passes run so far (``n_views * N`` per call).
    """

    name: str = "tta"
    n_views: int | float = 1
    views_computed: int = 0

    def __init__(self, reduce: str = "logits", max_batch: int = 4096) -> None:
        if reduce not in ("logits", "probs"):
            raise RunError(f"TTA policy {self.name!r}: reduce must be 'logits' or 'probs', got {reduce!r}")
        if int(max_batch) != max_batch or max_batch < 1:
            raise RunError(f"TTA policy {self.name!r}: max_batch must be an int >= 1, got {max_batch!r}")
        self.reduce, self.max_batch = reduce, int(max_batch)
        self.views_computed = 0

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The ``n_views`` transformed copies of ``images``, each ``(N, C, H, W)``."""
        raise NotImplementedError

    def view_weights(self) -> list[float] | None:
        """Weights of the views in the average (summing to 1), or ``None`` for equal weights."""
        return None

    def params(self) -> dict[str, Any]:
        return {"reduce": self.reduce, "max_batch": self.max_batch}

    def forward_views(self, model: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits ``(V, N, K)`` of ``model`` on each of the ``V`` views (each ``(N, ...)``); counted
        in ``views_computed``. Call under ``torch.no_grad()``."""
        n = views[0].shape[0]
        # one forward pass over all views where that is faster (GPUs); on a CPU a batch twice as
        # large costs more than twice as much (caches), so each view gets its own pass there
        if len(views) * n <= self.max_batch and views[0].device.type != "cpu":
            logits = model(torch.cat(list(views)) if len(views) > 1 else views[0])
        else:  # one view at a time, each chunked: bounded memory
            logits = torch.cat([model(chunk) for v in views for chunk in v.split(self.max_batch)])
        self.views_computed = self.views_computed + len(views) * n
        return logits.view(len(views), n, -1)

    def combine(self, logits: torch.Tensor, weights: Sequence[float] | None = None) -> torch.Tensor:
        """Reduce per-view logits ``(V, N, K)`` to ``(N, K)``: the (weighted) mean of the logits,
        or the log of the (weighted) mean softmax for ``reduce="probs"``; in float32 (a model under
        bf16 autocast gives bf16 logits, whose 8-bit mantissa would round the average)."""
        logits = logits.float()
        n_views = logits.shape[0]
        if weights is None:
            if self.reduce == "logits":
                return logits.mean(dim=0)
            return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=0) - torch.log(
                torch.tensor(float(n_views))
            )
        w = torch.tensor(list(weights), dtype=torch.float32, device=logits.device).view(-1, 1, 1)
        if self.reduce == "logits":
            return (w * logits).sum(dim=0)
        return torch.logsumexp(F.log_softmax(logits, dim=-1) + w.log(), dim=0)

    def __call__(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.combine(self.forward_views(model, self.views(images)), self.view_weights())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class NoTTA(TTAPolicy):
    """Plain evaluation: one view, the image itself."""

    name = "none"
    n_views = 1

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images]


class FlipTTA(TTAPolicy):
    """The image and its horizontal mirror: 2 views."""

    name = "flip"
    n_views = 2

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images, images.flip(-1)]


class FlipShiftTTA(TTAPolicy):
    """Flips x translations: the image and its mirror, each unshifted and shifted by ``shift``
    pixels left, right, up and down (reflect padding): 2 x 5 = 10 views.

    :param shift: translation in pixels (default 2).
    """

    name = "flip-shift"
    OFFSETS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx) in units of ``shift``
    n_views = 2 * len(OFFSETS)

    def __init__(self, shift: int = 2, reduce: str = "logits", max_batch: int = 4096) -> None:
        super().__init__(reduce=reduce, max_batch=max_batch)
        if int(shift) != shift or shift < 1:
            raise RunError(f"TTA policy 'flip-shift': shift must be an int >= 1, got {shift!r}")
        self.shift = int(shift)

    def params(self) -> dict[str, Any]:
        return {"shift": self.shift, **super().params()}

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        h, w, s = images.shape[-2], images.shape[-1], self.shift
        if s >= h or s >= w:
            raise RunError(f"TTA policy 'flip-shift': shift {s} is too large for {h}x{w} images")
        padded = F.pad(images, (s, s, s, s), mode="reflect")
        shifted = [
            padded[..., s + dy * s : s + dy * s + h, s + dx * s : s + dx * s + w] for dy, dx in self.OFFSETS
        ]
        return shifted + [v.flip(-1) for v in shifted]


def _shift_check(name: str, shift: int) -> int:
    if isinstance(shift, bool) or int(shift) != shift or shift < 1:
        raise RunError(f"TTA policy {name!r}: shift must be an int >= 1, got {shift!r}")
    return int(shift)


class MultiCropTTA(TTAPolicy):
    """airbench's multi-crop TTA (Jordan 2024, arXiv:2404.00498, sec. 3.7; airbench94's
    ``tta_level=2``): flips x translations, 6 views.

    Views, in order: the image, its mirror, then the image translated by ``shift`` pixels down-right
    and up-left (reflect padding), each with its mirror. The logits are averaged with weight
    ``(1 - weight) / 2`` for each untranslated view and ``weight / 4`` for each translated one
    (airbench: ``weight=0.5``, i.e. 1/4 and 1/8, the probabilities of the views under random
    flipping and a translation half of the time).

    :param shift: translation in pixels (airbench: 1).
    :param weight: total weight of the four translated views, in ``(0, 1)``.
    """

    name = "multicrop"
    n_views = 6

    def __init__(
        self, shift: int = 1, weight: float = 0.5, reduce: str = "logits", max_batch: int = 4096
    ) -> None:
        super().__init__(reduce=reduce, max_batch=max_batch)
        self.shift = _shift_check(self.name, shift)
        if not 0.0 < weight < 1.0:
            raise RunError(f"TTA policy {self.name!r}: weight must be in (0, 1), got {weight!r}")
        self.weight = float(weight)

    def params(self) -> dict[str, Any]:
        return {"shift": self.shift, "weight": self.weight, **super().params()}

    @staticmethod
    def base_views(images: torch.Tensor) -> list[torch.Tensor]:
        """The untranslated views: the image and its mirror."""
        return [images, images.flip(-1)]

    # (dy, dx) of each translated view, in units of `shift`: view pixel (i, j) = image pixel
    # (i - dy * shift, j - dx * shift); airbench's two are down-right and up-left
    OFFSETS: tuple[tuple[int, int], ...] = ((1, 1), (-1, -1))

    def translated_views(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The translated views: each translation in ``OFFSETS`` (reflect padding), then its mirror."""
        h, w, s = images.shape[-2], images.shape[-1], self.shift
        if s >= h or s >= w:
            raise RunError(f"TTA policy {self.name!r}: shift {s} is too large for {h}x{w} images")
        padded = F.pad(images, (s, s, s, s), mode="reflect")
        out = []
        for dy, dx in self.OFFSETS:
            view = padded[..., s - dy * s : s - dy * s + h, s - dx * s : s - dx * s + w]
            out += [view, view.flip(-1)]
        return out

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.base_views(images) + self.translated_views(images)

    def view_weights(self) -> list[float]:
        translated = 2 * len(self.OFFSETS)
        return [(1.0 - self.weight) / 2] * 2 + [self.weight / translated] * translated


class MultiCrop18TTA(MultiCropTTA):
    """:class:`MultiCropTTA` with all eight translations: flips x the image and its 8 neighbours
    (``shift`` pixels up, down, left, right and the four diagonals, reflect padding), 18 views.

    airbench's multicrop keeps two of the eight one-pixel translations (down-right and up-left,
    the first two here); this policy spends three times the inference compute on the rest of them,
    weighted alike: ``(1 - weight) / 2`` for each untranslated view, ``weight / 16`` for each
    translated one. It changes no training, so it can be chosen on a validation split over
    finished runs.
    """

    name = "multicrop18"
    n_views = 18
    OFFSETS = ((1, 1), (-1, -1), (1, -1), (-1, 1), (1, 0), (-1, 0), (0, 1), (0, -1))


class SelectiveTTA(TTAPolicy):
    """Selective TTA (hiverge, cifar10-speedrun, "Selective test time augmentation"): extra views
    only for the images the model is least sure about.

    Every image gets the two base views (image and mirror; their mean is the ``flip`` policy's
    prediction). The ``floor(fraction * N + 0.5)`` images (halves round up) of the batch with the lowest confidence in that
    prediction also get the four translated views of :class:`MultiCropTTA`, and their prediction is
    the multicrop combination of all six (the base logits are reused, not recomputed); the others
    keep the base prediction. hiverge's speedrun uses one base view and the 25% least-confident
    images; here the base is the mirror pair, the default fraction 0.2.

    The selection is made within each call, i.e. within each evaluation batch of the engine.
    ``n_views`` is the expected number of views per image, ``2 + 4 * fraction`` (2.8 by default), a
    float; ``views_computed`` counts the views actually run, ``2 N + 4 floor(fraction * N + 0.5)``.

    :param fraction: share of each batch that gets the extra views, in ``[0, 1]``.
    :param score: confidence measure of the base prediction: ``"max-prob"`` (largest softmax
        probability, as hiverge) or ``"margin"`` (largest minus second-largest probability).
    :param shift: translation of the extra views in pixels (as :class:`MultiCropTTA`).
    :param weight: total weight of the translated views for the selected images (as :class:`MultiCropTTA`).
    """

    name = "selective"
    SCORES = ("max-prob", "margin")

    def __init__(
        self,
        fraction: float = 0.2,
        score: str = "max-prob",
        shift: int = 1,
        weight: float = 0.5,
        reduce: str = "logits",
        max_batch: int = 4096,
    ) -> None:
        super().__init__(reduce=reduce, max_batch=max_batch)
        if not 0.0 <= fraction <= 1.0:
            raise RunError(f"TTA policy {self.name!r}: fraction must be in [0, 1], got {fraction!r}")
        if score not in self.SCORES:
            raise RunError(
                f"TTA policy {self.name!r}: score must be one of {list(self.SCORES)}, got {score!r}"
            )
        self.fraction, self.score = float(fraction), score
        self.multicrop = MultiCropTTA(shift=shift, weight=weight, reduce=reduce, max_batch=max_batch)
        self.n_views = 2 + 4 * self.fraction

    def params(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "score": self.score,
            "shift": self.multicrop.shift,
            "weight": self.multicrop.weight,
            **super().params(),
        }

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        """All six views a selected image gets (the multicrop views); most images get only the first two."""
        return self.multicrop.views(images)

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        """Confidence ``(N,)`` of the predictions ``logits`` (logits or log-probabilities)."""
        probs = F.softmax(logits.float(), dim=-1)
        if self.score == "max-prob" or probs.shape[-1] < 2:
            return probs.max(dim=-1).values
        top2 = probs.topk(2, dim=-1).values
        return top2[:, 0] - top2[:, 1]

    def selected(self, n: int) -> int:
        """How many of ``n`` images get the extra views."""
        return min(n, math.floor(self.fraction * n + 0.5))

    def __call__(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            base = self.forward_views(model, self.multicrop.base_views(images))  # (2, N, K)
            out = self.combine(base)
            k = self.selected(images.shape[0])
            if k == 0:
                return out
            idx = self.confidence(out).topk(k, largest=False).indices
            extra = self.forward_views(model, self.multicrop.translated_views(images[idx]))  # (4, k, K)
            out = out.clone()
            out[idx] = self.combine(torch.cat([base[:, idx], extra]), self.multicrop.view_weights())
            return out


# --- the reference paper's 5-view TTA -------------------------------------------------------------
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _symmetric_index(n: int, r: int, device: torch.device) -> torch.Tensor:
    """Indices ``-r .. n + r - 1`` folded into ``[0, n)`` by half-sample symmetric reflection
    (scipy.ndimage's ``mode="reflect"``: ``d c b a | a b c d | d c b a``), for any ``r``."""
    m = torch.arange(-r, n + r, device=device).remainder(2 * n)
    return torch.where(m < n, m, 2 * n - 1 - m)


def _gaussian_taps(sigma: float, truncate: float) -> list[float]:
    """scipy.ndimage's 1-D Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, normalised."""
    radius = int(truncate * sigma + 0.5)
    taps = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(-radius, radius + 1)]
    total = math.fsum(taps)
    return [t / total for t in taps]


def scipy_gaussian_blur(
    pixels: torch.Tensor,
    sigma: float,
    *,
    truncate: float = 4.0,
    dims: Sequence[int] = (2, 3, 1),
    quantize: bool = True,
) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter(image, sigma)`` on a batch, as a tensor op.

    One 1-D Gaussian pass per dim in ``dims`` (default H, W, C of an NCHW batch: scipy's axis order
    for an HWC image, so the colour axis is blurred too), with scipy's kernel
    (:func:`_gaussian_taps`) and boundary (half-sample reflection). ``quantize=True`` reproduces a
    uint8 input: scipy writes each pass to the uint8 output array, truncating towards zero, so each
    pass is followed by ``floor`` (``pixels`` then holds 0..255 values). Computed in float64 (float32
    on MPS), returned in that dtype.
    """
    work = torch.float64 if pixels.device.type != "mps" else torch.float32
    x = pixels.to(work)
    taps = _gaussian_taps(sigma, truncate)
    r = len(taps) // 2
    for dim in dims:
        n = x.shape[dim]
        padded = x.index_select(dim, _symmetric_index(n, r, x.device))
        out = taps[0] * padded.narrow(dim, 0, n)
        for t in range(1, len(taps)):
            out = out + taps[t] * padded.narrow(dim, t, n)
        # floor with a guard far below 1/255 against summation-order rounding on exact integers
        x = torch.floor(out + 1e-9) if quantize else out
    return x


class Paper5TTA(TTAPolicy):
    """The reference paper's 5-view TTA (Patil et al., ranjan2601/ResNet-MiniProject, Resnet.ipynb).

    Mean logits over: the image; its horizontal mirror; pad 4 then centre-crop back (torchvision
    ``Pad(4)`` + ``CenterCrop(32)``: the crop is exactly the original image, so this view equals
    the first; it is kept for fidelity and still costs a forward pass); a Gaussian blur; the
    vertical mirror. ``n_views = 5``.

    The notebook's blur is not torchvision's ``GaussianBlur``: it is
    ``scipy.ndimage.gaussian_filter(img, sigma=1.0)`` on the HWC uint8 array, i.e. a 9-tap kernel
    (scipy's ``truncate=4.0``), half-sample-reflect borders, the colour axis blurred along with the
    two spatial ones (scalar sigma), and uint8 truncation after each pass. The view reproduces that
    on the normalised batch: un-normalise with ``mean``/``std`` (and round to the uint8 pixel), blur
    as scipy does (:func:`scipy_gaussian_blur`), normalise again.

    :param sigma: blur sigma in pixels (notebook: 1.0).
    :param channel_blur: also blur across the colour axis, as the notebook's scalar sigma does.
    :param quantize: round to uint8 pixels and truncate after each pass, as the notebook does.
    :param mean, std: the normalisation of the images (0..1 units); default the notebook's CIFAR-10
        values. Pass the run's statistics so the pixels are recovered exactly.
    """

    name = "paper5"
    n_views = 5

    def __init__(
        self,
        sigma: float = 1.0,
        channel_blur: bool = True,
        quantize: bool = True,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        reduce: str = "logits",
        max_batch: int = 4096,
    ) -> None:
        super().__init__(reduce=reduce, max_batch=max_batch)
        if not sigma > 0:
            raise RunError(f"TTA policy {self.name!r}: sigma must be > 0, got {sigma!r}")
        if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
            raise RunError(
                f"TTA policy {self.name!r}: mean and std must be 3 per-channel values (std > 0), "
                f"got mean={list(mean)!r}, std={list(std)!r}"
            )
        self.sigma, self.channel_blur, self.quantize = float(sigma), bool(channel_blur), bool(quantize)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def setup(self, *, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use the run's normalisation (called by the run before evaluating; 0..1 units)."""
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def params(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "channel_blur": self.channel_blur,
            "quantize": self.quantize,
            "mean": list(self.mean),
            "std": list(self.std),
            **super().params(),
        }

    def blur(self, images: torch.Tensor) -> torch.Tensor:
        """The blur view of a normalised batch (see the class docstring)."""
        if images.shape[1] != 3:
            raise RunError(f"TTA policy {self.name!r}: needs 3-channel images, got {images.shape[1]}")
        work = torch.float64 if images.device.type != "mps" else torch.float32
        mean = torch.tensor(self.mean, dtype=work, device=images.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std, dtype=work, device=images.device).view(1, 3, 1, 1) * 255
        pixels = images.to(work) * std + mean
        if self.quantize:
            pixels = pixels.round().clamp(0, 255)
        dims = (2, 3, 1) if self.channel_blur else (2, 3)
        blurred = scipy_gaussian_blur(pixels, self.sigma, dims=dims, quantize=self.quantize)
        return ((blurred - mean) / std).to(images.dtype)

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        h, w = images.shape[-2], images.shape[-1]
        pad_crop = F.pad(images, (4, 4, 4, 4))[..., 4 : 4 + h, 4 : 4 + w]  # Pad(4) + CenterCrop: identity
        return [images, images.flip(-1), pad_crop, self.blur(images), images.flip(-2)]

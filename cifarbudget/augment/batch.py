"""The builtin batched augmentations: crop-flip, CutMix, mixup, Gaussian blur, random erasing, Cutout.

Every augmentation transforms a whole batch on its device with a few tensor ops: per-image
randomness is drawn as vectors from torch's global RNG (``torch.rand(n, device=...)``), never in a
Python loop over images, so the same code is fast on a GPU and reproducible under
``torch.manual_seed``. Each one is called as ``aug(images, targets) -> (images, targets)`` with
``images`` a normalised float ``(N, C, H, W)`` batch and ``targets`` float soft labels ``(N, K)``;
the inputs are never modified in place. A random draw is made whether or not an image ends up
augmented, so the RNG stream depends on the batch shape only. What comes from timm and what is
written here is explained in ``docs/components.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from cifarbudget.augment.pipeline import BatchAugmentation, check, check_prob, check_range

__all__ = ["Blur", "CropFlip", "CutMix", "Cutout", "Mixup", "RandomErasing", "beta", "box_mask"]


def box_mask(
    top: torch.Tensor, bottom: torch.Tensor, left: torch.Tensor, right: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Boolean ``(N, H, W)`` mask of the per-image boxes ``[top, bottom) x [left, right)``."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])  # (N, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def beta(alpha: float, n: int, device: torch.device) -> torch.Tensor:
    """``n`` draws from Beta(alpha, alpha) on ``device`` (torch's global RNG)."""
    if alpha == 1.0:  # Beta(1, 1) is uniform: cheaper, and exact
        return torch.rand(n, device=device)
    conc = torch.full((n,), float(alpha), device=device)
    return torch.distributions.Beta(conc, conc).sample()


# --- crop-flip: the standard CIFAR augmentation ---------------------------------------------------
class CropFlip(BatchAugmentation):
    """Pad by ``padding``, take a random ``H x W`` crop and flip horizontally with probability 1/2.

    The standard CIFAR augmentation (He et al. 2016, sec. 4.2). Per image offsets and flips;
    implemented as one ``gather`` with per-image pixel indices into the padded batch, so each
    output image is an exact translated (and possibly mirrored) copy of the padded input.

    :param padding: pixels added on every side (the crop offset is uniform in ``[0, 2*padding]``).
    :param padding_mode: ``"reflect"`` (default, as in airbench), ``"zeros"`` (0 in normalised space,
        i.e. the dataset-mean colour) or ``"replicate"``.
    :param flip: also flip horizontally with probability 1/2.
    """

    name = "crop-flip"
    _MODES: ClassVar[dict[str, str]] = {"reflect": "reflect", "zeros": "constant", "replicate": "replicate"}

    def __init__(self, padding: int = 4, padding_mode: str = "reflect", flip: bool = True) -> None:
        check(
            int(padding) == padding and padding >= 0,
            f"crop-flip: padding must be an int >= 0, got {padding!r}",
        )
        check(
            padding_mode in self._MODES,
            f"crop-flip: padding_mode must be one of {sorted(self._MODES)}, got {padding_mode!r}",
        )
        self.padding, self.padding_mode, self.flip = int(padding), padding_mode, bool(flip)

    def params(self) -> dict[str, Any]:
        return {"padding": self.padding, "padding_mode": self.padding_mode, "flip": self.flip}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = images.shape
        dev, p = images.device, self.padding
        padded = F.pad(images, (p, p, p, p), mode=self._MODES[self.padding_mode]) if p else images
        dy = torch.randint(0, 2 * p + 1, (n,), device=dev)
        dx = torch.randint(0, 2 * p + 1, (n,), device=dev)
        rows = dy[:, None] + torch.arange(h, device=dev)  # (N, H) rows of the padded image
        cols = dx[:, None] + torch.arange(w, device=dev)  # (N, W)
        if self.flip:
            flip = torch.rand(n, device=dev) < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        # one gather over the flattened padded images, the same pixel index for every channel
        index = (rows[:, :, None] * padded.shape[3] + cols[:, None, :]).view(n, 1, h * w)
        out = padded.reshape(n, c, -1).gather(2, index.expand(n, c, h * w))
        return out.view(n, c, h, w), targets


# --- CutMix and mixup: mix each image with a partner from the same batch ------------------------
class CutMix(BatchAugmentation):
    """CutMix (Yun et al. 2019, arXiv:1905.04899): paste a box from a batch partner.

    Per image: ``lam ~ Beta(alpha, alpha)``; a box of side ratio ``sqrt(1 - lam)`` centred
    uniformly in the image (clipped at the borders) is copied from the image's partner under a
    random permutation of the batch. The targets are mixed by the exact pasted-area fraction ``a``
    (timm's ``correct_lam``): ``t = (1 - a) * t + a * t[partner]``. Each image is cut-mixed with
    probability ``p`` (the official CIFAR code uses ``cutmix_prob=0.5`` per batch; here per image).
    An image whose partner is itself is unchanged.
    """

    name = "cutmix"

    def __init__(self, alpha: float = 1.0, p: float = 0.5) -> None:
        check(alpha > 0, f"cutmix: alpha must be > 0, got {alpha!r}")
        self.alpha, self.p = float(alpha), check_prob("cutmix", p)

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "p": self.p}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        dev = images.device
        lam = beta(self.alpha, n, dev)
        apply = torch.rand(n, device=dev) < self.p
        perm = torch.randperm(n, device=dev)
        cy = torch.randint(0, h, (n,), device=dev)
        cx = torch.randint(0, w, (n,), device=dev)
        # Box size as in timm.data.mixup.rand_bbox (int() truncation), vectorised over the batch.
        ratio = torch.sqrt(1.0 - lam)
        cut_h = (h * ratio).long() * apply
        cut_w = (w * ratio).long() * apply
        top = (cy - cut_h // 2).clamp(0, h)
        bottom = (cy + (cut_h + 1) // 2).clamp(0, h)
        left = (cx - cut_w // 2).clamp(0, w)
        right = (cx + (cut_w + 1) // 2).clamp(0, w)
        mask = box_mask(top, bottom, left, right, h, w)
        area = mask.sum(dim=(1, 2)).to(targets.dtype) / (h * w)  # exact pasted fraction
        images = torch.where(mask[:, None], images[perm], images)
        targets = (1.0 - area[:, None]) * targets + area[:, None] * targets[perm]
        return images, targets


class Mixup(BatchAugmentation):
    """mixup (Zhang et al. 2018, arXiv:1710.09412): a convex blend with a batch partner.

    Per image: ``lam ~ Beta(alpha, alpha)``, ``x = lam * x + (1 - lam) * x[partner]`` and the same
    for the targets, with partners from a random permutation of the batch; applied to each image
    with probability ``p``. ``alpha=1.0`` is the paper's CIFAR-10 setting (and the official
    mixup-cifar10 default); ``alpha=0.2`` is a milder mix (their ImageNet setting).
    """

    name = "mixup"

    def __init__(self, alpha: float = 1.0, p: float = 1.0) -> None:
        check(alpha > 0, f"mixup: alpha must be > 0, got {alpha!r}")
        self.alpha, self.p = float(alpha), check_prob("mixup", p)

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "p": self.p}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, dev = images.shape[0], images.device
        lam = beta(self.alpha, n, dev)
        apply = torch.rand(n, device=dev) < self.p
        perm = torch.randperm(n, device=dev)
        lam = torch.where(apply, lam, torch.ones_like(lam))
        # lerp(partner, own, lam) = lam * own + (1 - lam) * partner, in one pass; lam = 1 gives own exactly
        images = torch.lerp(images[perm], images, lam.to(images.dtype)[:, None, None, None])
        targets = torch.lerp(targets[perm], targets, lam.to(targets.dtype)[:, None])
        return images, targets


# --- Gaussian blur ------------------------------------------------------------------------------
class Blur(BatchAugmentation):
    """Gaussian blur with a per-image random sigma, applied to each image with probability ``p``.

    ``sigma ~ U(sigma[0], sigma[1])`` per image, as torchvision's ``GaussianBlur``; separable,
    reflect-padded. Each pass is ``kernel_size`` multiply-adds of the whole batch with per-image
    weights (no per-sigma buckets, no loop over images). ``kernel_size=3`` (default) matches the
    ``GaussianBlur(3, sigma=(0.1, 2.0))`` common in CIFAR notebooks; ``kernel_size=None`` sizes the
    kernel from the largest sigma (``2 * ceil(3 * sigma_max) + 1``).
    """

    name = "blur"

    def __init__(
        self, sigma: Sequence[float] = (0.1, 2.0), p: float = 0.5, kernel_size: int | None = 3
    ) -> None:
        lo, hi = check_range("blur", "sigma", sigma, 1e-6, math.inf)
        if kernel_size is None:
            kernel_size = 2 * math.ceil(3 * hi) + 1
        check(
            int(kernel_size) == kernel_size and kernel_size >= 1 and kernel_size % 2 == 1,
            f"blur: kernel_size must be an odd int >= 1, got {kernel_size!r}",
        )
        self.sigma, self.p, self.kernel_size = (lo, hi), check_prob("blur", p), int(kernel_size)

    def params(self) -> dict[str, Any]:
        return {"sigma": list(self.sigma), "p": self.p, "kernel_size": self.kernel_size}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        dev = images.device
        lo, hi = self.sigma
        sigma = lo + (hi - lo) * torch.rand(n, device=dev)
        apply = torch.rand(n, device=dev) < self.p
        r = self.kernel_size // 2
        check(r < h and r < w, f"blur: kernel_size {self.kernel_size} is too large for {h}x{w} images")
        if r == 0:
            return images, targets
        taps = torch.arange(-r, r + 1, device=dev, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(images.dtype)  # (N, K), rows sum to 1
        weights = kernel[:, :, None, None, None]  # (N, K, 1, 1, 1) broadcast over (C, H, W)
        padded = F.pad(images, (r, r, r, r), mode="reflect")
        # horizontal pass over the padded rows, then vertical pass: K fused multiply-adds each
        horiz = weights[:, 0] * padded[:, :, :, 0:w]
        for t in range(1, self.kernel_size):
            horiz = horiz.addcmul_(weights[:, t], padded[:, :, :, t : t + w])
        blurred = weights[:, 0] * horiz[:, :, 0:h, :]
        for t in range(1, self.kernel_size):
            blurred = blurred.addcmul_(weights[:, t], horiz[:, :, t : t + h, :])
        return torch.where(apply[:, None, None, None], blurred, images), targets


# --- random erasing and Cutout ------------------------------------------------------------------
class RandomErasing(BatchAugmentation):
    """Random erasing (Zhong et al. 2020, arXiv:1708.04896), batched.

    With probability ``p`` per image, one box of area ``U(area)`` x image area and aspect ratio
    log-uniform in ``aspect`` is filled. Like the paper (and timm), a box that does not fit is
    re-drawn: ``attempts`` candidates are drawn per image at once and the first that fits is used
    (none fits: the image is left alone). ``mode``: ``"pixel"`` per-pixel standard normal values
    (the paper's random fill, in normalised space; timm's ``mode='pixel'``), ``"rand"`` one normal
    colour per box, ``"const"`` zeros (the dataset-mean colour, torchvision's default).
    Only the pixels inside the box change.
    """

    name = "erasing"
    _FILL_MODES = ("pixel", "rand", "const")

    def __init__(
        self,
        p: float = 0.5,
        area: Sequence[float] = (0.02, 0.33),
        aspect: Sequence[float] = (0.3, 3.3),
        mode: str = "pixel",
        attempts: int = 10,
    ) -> None:
        self.p = check_prob("erasing", p)
        self.area = check_range("erasing", "area", area, 0.0, 1.0)
        self.aspect = check_range("erasing", "aspect", aspect, 1e-6, math.inf)
        check(
            mode in self._FILL_MODES, f"erasing: mode must be one of {list(self._FILL_MODES)}, got {mode!r}"
        )
        check(
            int(attempts) == attempts and attempts >= 1,
            f"erasing: attempts must be an int >= 1, got {attempts!r}",
        )
        self.mode, self.attempts = mode, int(attempts)

    def params(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "area": list(self.area),
            "aspect": list(self.aspect),
            "mode": self.mode,
            "attempts": self.attempts,
        }

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = images.shape
        dev, k = images.device, self.attempts
        a_lo, a_hi = self.area
        log_lo, log_hi = math.log(self.aspect[0]), math.log(self.aspect[1])
        target_area = (a_lo + (a_hi - a_lo) * torch.rand(n, k, device=dev)) * (h * w)
        aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, k, device=dev))
        box_h = torch.sqrt(target_area * aspect).round().long()
        box_w = torch.sqrt(target_area / aspect).round().long()
        fits = (box_h < h) & (box_w < w) & (box_h > 0) & (box_w > 0)  # as in the paper: w < W, h < H
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first candidate that fits
        box_h, box_w = box_h.gather(1, first)[:, 0], box_w.gather(1, first)[:, 0]
        apply = (torch.rand(n, device=dev) < self.p) & fits.any(dim=1)
        top = (torch.rand(n, device=dev) * (h - box_h + 1)).long().clamp(max=h - 1)
        left = (torch.rand(n, device=dev) * (w - box_w + 1)).long().clamp(max=w - 1)
        box_h, box_w = box_h * apply, box_w * apply
        mask = box_mask(top, top + box_h, left, left + box_w, h, w)[:, None]
        if self.mode == "pixel" and dev.type != "cpu":
            # on a GPU: one fused where, no host sync (counting the erased pixels would need one)
            return torch.where(mask, torch.randn_like(images), images), targets
        if self.mode == "pixel":
            # on a CPU: draw normals only for the erased pixels (about p x mean area, ~9% of the batch)
            full = mask.expand(n, c, h, w)
            return images.masked_scatter(
                full, torch.randn(int(full.sum()), device=dev, dtype=images.dtype)
            ), targets
        if self.mode == "rand":
            fill = torch.randn(n, c, 1, 1, device=dev, dtype=images.dtype)
        else:
            fill = torch.zeros((), device=dev, dtype=images.dtype)
        return torch.where(mask, fill, images), targets


class Cutout(BatchAugmentation):
    """Cutout (DeVries & Taylor 2017, arXiv:1708.04552): zero a ``size x size`` square.

    Per image the square's centre is uniform over the image and the square is clipped at the
    borders, as in the paper's code; the fill is 0 in normalised space (the dataset-mean colour,
    as the paper applies the mask after normalising). ``size=16`` is their CIFAR-10 setting
    (8 for CIFAR-100); applied to each image with probability ``p`` (1.0 in the paper).
    """

    name = "cutout"

    def __init__(self, size: int = 16, p: float = 1.0) -> None:
        check(int(size) == size and size >= 1, f"cutout: size must be an int >= 1, got {size!r}")
        self.size, self.p = int(size), check_prob("cutout", p)

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "p": self.p}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        dev = images.device
        cy = torch.randint(0, h, (n,), device=dev)
        cx = torch.randint(0, w, (n,), device=dev)
        apply = torch.rand(n, device=dev) < self.p
        half = self.size // 2
        top, bottom = (cy - half).clamp(0, h), (cy - half + self.size).clamp(0, h)
        left, right = (cx - half).clamp(0, w), (cx - half + self.size).clamp(0, w)
        mask = box_mask(top, bottom, left, right, h, w) & apply[:, None, None]
        return images.masked_fill(mask[:, None], 0.0), targets

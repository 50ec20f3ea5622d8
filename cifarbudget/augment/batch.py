"""The builtin batched augmentations: crop-flip, vertical flip, CutMix, mixup, Gaussian blur, random erasing, Cutout.

Every augmentation transforms a whole batch on its device with a few tensor ops: per-image
randomness is drawn as vectors from torch's global RNG (``torch.rand(n, device=...)``), never in a
Python loop over images, so the same code is fast on a GPU and reproducible under
``torch.manual_seed``. (One CPU-only exception to "tensor ops": erasing and Cutout write their
drawn boxes into host memory one numpy slice each, cheaper there than building index tensors.)
Each one is called as ``aug(images, targets) -> (images, targets)`` with ``images`` a normalised
float ``(N, C, H, W)`` batch and ``targets`` float soft labels ``(N, K)``;
the inputs are never modified in place. A random draw is made whether or not an image ends up
augmented, so the RNG stream depends on the batch shape only (one exception: on the CPU, random
erasing with random-pixel fill draws noise only for the images it erases; the stream is still
fixed by the seed). What comes from timm and what is
written here is explained in ``docs/components.md``.

Stages (:mod:`cifarbudget.augment.pipeline`): the ones that only move pixels (crop-flip with
``reflect``/``replicate`` padding, ``vflip``) run at stage ``"any"``: on the raw uint8 batch when
the pipeline can run them before normalising without changing its order (a uint8 gather moves a
quarter of the bytes), on the normalised batch otherwise, with exactly the same normalised result
(normalisation is a per-pixel affine map and they copy pixels). Crop-flip with ``black`` padding
needs the raw pixels (stage ``"uint8"``); the others work on the normalised batch.

Speed: the engine's normalised batches are ``channels_last`` on the CPU and on CUDA, so the
channel is the innermost dimension in memory. A per-pixel ``(N, 1, H, W)`` mask broadcast over it
leaves elementwise kernels an inner loop of 3 values (5-10x slower on the CPU), so the masks here
are built in the batch's own layout (:func:`box_weight`) and applied with ``torch.lerp`` (a
vectorised kernel; ``where``/``masked_fill`` run scalar loops on the CPU). A 0/1 ``lerp`` weight
selects exactly one of its two inputs, so the results equal those of ``torch.where`` value for
value. On the CPU, where reading a count costs no device sync, blur and vertical flip compute
only the images they change, erasing and Cutout write each box as a numpy slice of the batch's
memory (:func:`fill_boxes`) and batch-mode CutMix works out its one box on the host; on a GPU
they stay sync-free. At the recipes' batch size (128) much of the CPU cost is per op, not per
value, so the small per-image vectors are computed with few ops: consecutive draws are one call
on the CPU (:func:`consecutive_draws`, the same values and RNG stream), index tensors that
depend only on the shape are made once (cached), and box heights and widths are computed side
by side as one tensor. Every
normalised-stage one here is an :class:`~cifarbudget.augment.pipeline.InPlaceAugmentation`: in a
pipeline, on the batch normalisation made, it writes into that batch instead of copying the whole
batch (``out=images``; the values are the same either way).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cifarbudget.augment.pipeline import (
    BatchAugmentation,
    InPlaceAugmentation,
    check,
    check_prob,
    check_range,
)

__all__ = [
    "MATMUL_MIN_TAPS",
    "Blur",
    "CropFlip",
    "CutMix",
    "Cutout",
    "Mixup",
    "RandomErasing",
    "VerticalFlip",
    "beta",
    "blur_matrix",
    "box_mask",
    "box_weight",
    "consecutive_draws",
    "copy_images_",
    "crop_rows",
    "fill_boxes",
    "gather_pixels",
    "gaussian_kernels",
    "is_channels_last",
    "per_image_colour",
    "separable_blur",
    "syncs_freely",
]


def box_mask(
    top: torch.Tensor, bottom: torch.Tensor, left: torch.Tensor, right: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Boolean ``(N, H, W)`` mask of the per-image boxes ``[top, bottom) x [left, right)``."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])  # (N, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def syncs_freely(device: torch.device) -> bool:
    """Whether reading a tensor's value on the host is free here (the CPU): then an op may count
    or select the images it changes; on an accelerator it stays one sync-free batched op."""
    return device.type == "cpu"


def consecutive_draws(
    sample: Callable[[int], torch.Tensor], device: torch.device, *counts: int
) -> torch.Tensor:
    """``torch.cat([sample(count) for count in counts])``: consecutive draws as one flat tensor.

    On the CPU it is one call, ``sample(sum(counts))``: torch's CPU generator fills a ``rand`` or
    ``randint`` tensor value by value in order, so one draw of the total gives the same values
    and leaves the generator in the same state as the consecutive draws
    (``tests/test_aug_equivalence.py`` checks it), in one op instead of several. Elsewhere each
    draw is its own call (a GPU generator advances per call), so the stream is the same as drawing
    them one by one there too.
    """
    if device.type == "cpu":
        return sample(sum(counts))
    return torch.cat([sample(count) for count in counts])


def _out(images: torch.Tensor, inplace: bool) -> torch.Tensor | None:
    """The ``out=`` of an elementwise op that may overwrite ``images``: itself, or ``None`` (a new tensor).

    An elementwise op may write into an input it reads at the same positions (every value is read
    before it is written), so the in-place result equals the out-of-place one value for value.
    """
    return images if inplace else None


def is_channels_last(images: torch.Tensor) -> bool:
    """Whether a 4-d batch is stored channels_last (and not also plainly contiguous)."""
    return (
        images.dim() == 4
        and not images.is_contiguous()
        and images.is_contiguous(memory_format=torch.channels_last)
    )


def box_weight(
    images: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor, left: torch.Tensor, right: torch.Tensor
) -> torch.Tensor:
    """1 inside the per-image boxes ``[top, bottom) x [left, right)``, 0 outside, in ``images``' dtype.

    Laid out to broadcast against ``images`` with long inner loops: ``(N, 1, H, W)`` for a
    contiguous batch, a channels_last ``(N, C, H, W)`` tensor (each value repeated over the
    channels) for a channels_last one.
    """
    n, c, h, w = images.shape
    dev, dtype = images.device, images.dtype
    rows = torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    in_rows = ((rows >= top[:, None]) & (rows < bottom[:, None])).to(dtype)  # (N, H)
    in_cols = ((cols >= left[:, None]) & (cols < right[:, None])).to(dtype)  # (N, W)
    if is_channels_last(images):
        in_cols = in_cols.repeat_interleave(c, dim=1)  # (N, W * C): the channel is innermost in memory
        return (in_rows[:, :, None] * in_cols[:, None, :]).view(n, h, w, c).permute(0, 3, 1, 2)
    return (in_rows[:, :, None] * in_cols[:, None, :])[:, None]


def per_image_colour(images: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """``colour`` ``(N, C)`` as a tensor that broadcasts against ``images`` like :func:`box_weight`."""
    n, c, _, w = images.shape
    if is_channels_last(images):  # (N, C, 1, W) channels_last: channel and column coalesce
        return colour.view(n, 1, 1, c).expand(n, 1, w, c).contiguous().permute(0, 3, 1, 2)
    return colour[:, :, None, None]


def beta(alpha: float, n: int, device: torch.device) -> torch.Tensor:
    """``n`` draws from Beta(alpha, alpha) on ``device`` (torch's global RNG)."""
    if alpha == 1.0:  # Beta(1, 1) is uniform: cheaper, and exact
        return torch.rand(n, device=device)
    conc = torch.full((n,), float(alpha), device=device)
    return torch.distributions.Beta(conc, conc).sample()


def gather_pixels(source: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``out[n, :, i, j] = source[n, :, rows[n, i], cols[n, j]]`` in one gather, any dtype.

    ``rows`` ``(N, H)`` and ``cols`` ``(N, W)`` are per-image source coordinates. A channels_last
    source gives a channels_last result (whole pixels are copied); any other a contiguous one.
    """
    n, c, sh, sw = source.shape
    h, w = rows.shape[1], cols.shape[1]
    pixel = (rows[:, :, None] * sw + cols[:, None, :]).view(n, h * w)  # per-image flat pixel index
    if is_channels_last(source):
        flat = (pixel + torch.arange(n, device=source.device)[:, None] * (sh * sw)).view(-1)
        out = source.permute(0, 2, 3, 1).reshape(n * sh * sw, c).index_select(0, flat)
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    index = pixel[:, None, :].expand(n, c, h * w)  # the same pixel for every channel
    return source.reshape(n, c, sh * sw).gather(2, index).view(n, c, h, w)


# --- crop-flip: the standard CIFAR augmentation ---------------------------------------------------
class CropFlip(BatchAugmentation):
    """Pad by ``padding``, take a random ``H x W`` crop and flip horizontally with probability 1/2.

    The standard CIFAR augmentation (He et al. 2016, sec. 4.2). Per image offsets and flips;
    implemented as one pad and one row gather (:func:`crop_rows`), so each output image is an
    exact translated (and possibly mirrored) copy of the padded input.

    :param padding: pixels added on every side (the crop offset is uniform in ``[0, 2*padding]``).
    :param padding_mode: where the padded pixels come from:

        - ``"reflect"`` (default, as in airbench) and ``"replicate"``: mirrored / edge pixels.
          Stage ``"any"``: run on the uint8 batch when the pipeline allows, with the same result.
        - ``"black"``: pixel value 0 before normalisation, i.e. torchvision's
          ``RandomCrop(32, padding=4)`` on PIL images or uint8 tensors (``fill=0``), as in most
          CIFAR notebooks and the paper's. Stage ``"uint8"``: it needs the raw batch.
        - ``"zeros"``: 0 in normalised space, i.e. the dataset-mean colour (what padding a
          normalised tensor with ``F.pad`` gives). Stage ``"normalized"``.
    :param flip: also flip horizontally with probability 1/2.
    """

    name = "crop-flip"
    per_image = True
    _STAGES: ClassVar[dict[str, str]] = {
        "reflect": "any",
        "replicate": "any",
        "black": "uint8",
        "zeros": "normalized",
    }

    def __init__(self, padding: int = 4, padding_mode: str = "reflect", flip: bool = True) -> None:
        check(
            int(padding) == padding and padding >= 0,
            f"crop-flip: padding must be an int >= 0, got {padding!r}",
        )
        check(
            padding_mode in self._STAGES,
            f"crop-flip: padding_mode must be one of {sorted(self._STAGES)}, got {padding_mode!r}",
        )
        self.padding, self.padding_mode, self.flip = int(padding), padding_mode, bool(flip)
        self.stage = self._STAGES[padding_mode]
        # black padding crops a channels_last uint8 batch as fast as a contiguous one; reflect and
        # replicate padding are slower on it on the CPU (pad_images)
        self.uint8_layout = "channels_last" if padding_mode == "black" else "contiguous"

    def params(self) -> dict[str, Any]:
        return {"padding": self.padding, "padding_mode": self.padding_mode, "flip": self.flip}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        dev, p, mode = images.device, self.padding, self.padding_mode
        if mode == "black":
            check(
                images.dtype == torch.uint8,
                "crop-flip: padding_mode='black' pads with black pixels before normalisation and needs "
                "the uint8 batch (in a pipeline it runs before normalize)",
            )
        elif mode == "zeros":
            check(
                images.dtype.is_floating_point,
                "crop-flip: padding_mode='zeros' pads with 0 in normalised space (the mean colour) and "
                "needs the normalised batch; use padding_mode='black' for black pixels",
            )
        elif mode == "reflect":
            check(p < h and p < w, f"crop-flip: reflect padding {p} must be smaller than the image ({h}x{w})")
        offsets = consecutive_draws(lambda m: torch.randint(0, 2 * p + 1, (m,), device=dev), dev, n, n)
        dy, dx = offsets.view(2, n)
        flip = torch.rand(n, device=dev) < 0.5 if self.flip else None
        padded = pad_images(images, p, "constant" if mode in ("black", "zeros") else mode)
        return crop_rows(padded, dy, dx, flip, h, w), targets  # copies whole rows, in either layout


def pad_images(images: torch.Tensor, p: int, mode: str) -> torch.Tensor:
    """``F.pad(images, (p, p, p, p), mode)`` (``"constant"``: zeros), keeping a channels_last
    batch channels_last. ``F.pad``'s reflect and replicate kernels are about 10x slower on a
    channels_last batch than on a contiguous one on the CPU; there the borders are made by one
    ``cat`` of single slices per side (:func:`_reflect_pad`, :func:`_edge_pad`), columns first
    (on the shorter batch), then whole rows. The same values as ``F.pad``."""
    if not p:
        return images
    if mode == "constant":
        return F.pad(images, (p, p, p, p), value=0)
    if images.device.type != "cpu" or not is_channels_last(images):
        return F.pad(images, (p, p, p, p), mode=mode)
    pad = _reflect_pad if mode == "reflect" else _edge_pad
    return pad(pad(images, p, 3), p, 2)


def _edge_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """``x`` padded by ``r`` copies of its edge values along ``dim`` (``F.pad``'s replicate)."""
    size = x.shape[dim]
    return torch.cat([*[x.narrow(dim, 0, 1)] * r, x, *[x.narrow(dim, size - 1, 1)] * r], dim)


def crop_rows(
    padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor | None, h: int, w: int
) -> torch.Tensor:
    """Per-image ``h x w`` crops at ``(dy, dx)`` of a padded batch, mirrored where ``flip``.

    Every output row is a run of consecutive values of a padded row: ``w * C`` of them in a
    channels_last batch (whole pixels), ``w`` of one channel plane in a contiguous one. So the crop
    is one ``index_select`` of rows from an overlapping-window view of the batch (a copy of whole
    rows; gathering value by value moved 3-value rows and was about 2-10x slower on the CPU). A
    flipped image is cropped the same way, then mirrored (the mirror of a crop is the crop of the
    mirror, at offset ``2p - dx``); on the CPU only the crops that flip are mirrored, on an
    accelerator the whole batch is (no host sync). The result keeps the layout (channels_last,
    or contiguous for any other input), value for value what :func:`gather_pixels` gives with the
    same offsets.
    """
    n, c, sh, sw = padded.shape
    dev = padded.device
    if is_channels_last(padded):  # memory (N, SH, SW, C): one plane per image, C values per pixel
        planes, unit = 1, c
        pixels = padded.permute(0, 2, 3, 1).reshape(n, 1, sh, sw, c)
    else:  # memory (N, C, SH, SW): C planes per image, one value per pixel
        planes, unit = c, 1
        pixels = padded.contiguous().view(n, c, sh, sw, 1)
    flat = pixels.reshape(-1)
    windows = flat.as_strided((flat.numel() // unit - w + 1, w * unit), (unit, 1))  # a window per pixel
    # first pixel of output row y of plane k of image i: ((i * planes + k) * SH + dy + y) * SW + dx,
    # i.e. the crop at offset 0 (made once per shape) plus dy * SW + dx
    offset = torch.add(dx, dy, alpha=sw)
    start = _row_starts(n, planes, sh, sw, h, dev) + offset[:, None, None]
    out = windows.index_select(0, start.view(-1)).view(n, planes, h, w, unit)
    if flip is not None:  # mirror the crops of the images that flip, whole pixels at a time
        if syncs_freely(dev):
            flipped = flip.nonzero()[:, 0]
            copy_images_(out, flipped, out.index_select(0, flipped).flip(3))
        else:
            out = torch.where(flip[:, None, None, None, None], out.flip(3), out)
    if planes == 1:
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    return out.view(n, c, h, w)


@functools.lru_cache(maxsize=32)
def _row_starts(n: int, planes: int, sh: int, sw: int, h: int, device: torch.device) -> torch.Tensor:
    """``(N, planes, h)``: the first pixel of each output row of :func:`crop_rows` at offset 0,
    ``((i * planes + k) * SH + y) * SW`` (made once per shape)."""
    plane = (torch.arange(n, device=device)[:, None] * planes + torch.arange(planes, device=device)) * sh
    return (plane[:, :, None] + torch.arange(h, device=device)) * sw


def copy_images_(out: torch.Tensor, index: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``out.index_copy_(0, index, source)``: whole images into a batch, in place.

    ``index_copy_`` moves one element at a time on the CPU; contiguous uint8 images (any size a
    multiple of 4 bytes) are moved as int32 words instead, 4x fewer elements. The bytes written
    are the same.
    """
    n, m = out.shape[0], source.shape[0]
    if m == 0:  # nothing to copy (no image of the batch drew it); reshape(0, -1) would raise
        return out
    if (
        n > 0
        and out.element_size() < 4
        and out[0].numel() * out.element_size() % 4 == 0
        and out.is_contiguous()
        and source.is_contiguous()
        and source.dtype == out.dtype
    ):
        out.view(n, -1).view(torch.int32).index_copy_(0, index, source.reshape(m, -1).view(torch.int32))
        return out
    return out.index_copy_(0, index, source)


class VerticalFlip(InPlaceAugmentation):
    """Mirror each image upside down with probability ``p`` (torchvision's ``RandomVerticalFlip``).

    Not a label-preserving symmetry of natural images, so usually rare: the reference paper's
    optimized recipe (Patil et al., ranjan2601/ResNet-MiniProject) uses ``p=0.05``. Stage
    ``"any"``: it only moves pixels. On the CPU only the flipped images are copied.
    """

    name = "vflip"
    per_image = True
    stage = "any"
    uint8_layout = "channels_last"  # it moves whole images in either layout

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_prob("vflip", p)

    def params(self) -> dict[str, Any]:
        return {"p": self.p}

    def transform(
        self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flip = torch.rand(images.shape[0], device=images.device) < self.p
        if not syncs_freely(images.device):  # no host sync
            return torch.where(
                flip[:, None, None, None], images.flip(2), images, out=_out(images, inplace)
            ), targets
        index = flip.nonzero()[:, 0]
        if index.numel() == 0:
            return images, targets
        out = images if inplace else images.clone()
        if is_channels_last(images):  # whole images are contiguous (H, W, C) blocks: move them as such
            pixels = out.permute(0, 2, 3, 1)
            copy_images_(pixels, index, pixels.index_select(0, index).flip(1))
        else:
            copy_images_(out, index, images.index_select(0, index).flip(2))
        return out, targets


# --- CutMix and mixup: mix each image with a partner from the same batch ------------------------
class CutMix(InPlaceAugmentation):
    """CutMix (Yun et al. 2019, arXiv:1905.04899): paste a box from a batch partner.

    ``mode="image"`` (default): per image, ``lam ~ Beta(alpha, alpha)``; a box of side ratio
    ``sqrt(1 - lam)`` centred uniformly in the image (clipped at the borders) is copied from the
    image's partner under a random permutation of the batch. The targets are mixed by the exact
    pasted-area fraction ``a`` (timm's ``correct_lam``): ``t = (1 - a) * t + a * t[partner]``.
    Each image is cut-mixed with probability ``p``. An image whose partner is itself is unchanged.

    ``mode="batch"``: the official CIFAR code's and the reference paper's notebook's form: with
    probability ``p`` the whole batch is cut-mixed with one ``lam``, one box (its half-sides
    ``int(H * sqrt(1 - lam)) // 2`` and ``int(W * sqrt(1 - lam)) // 2`` on both sides of a uniform
    centre, clipped, as their ``rand_bbox``) and a random permutation as partners; ``lam`` is
    corrected to the box's area as above.
    """

    name = "cutmix"
    _MODES = ("image", "batch")

    def __init__(self, alpha: float = 1.0, p: float = 0.5, mode: str = "image") -> None:
        check(alpha > 0, f"cutmix: alpha must be > 0, got {alpha!r}")
        check(mode in self._MODES, f"cutmix: mode must be one of {list(self._MODES)}, got {mode!r}")
        self.alpha, self.p, self.mode = float(alpha), check_prob("cutmix", p), mode

    def params(self) -> dict[str, Any]:
        # the default per-image mode is recorded as before the batch mode existed
        mode = {"mode": self.mode} if self.mode != "image" else {}
        return {"alpha": self.alpha, "p": self.p, **mode}

    def transform(
        self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        dev = images.device
        draws = 1 if self.mode == "batch" else n
        lam = beta(self.alpha, draws, dev)
        apply = torch.rand(draws, device=dev) < self.p
        perm = torch.randperm(n, device=dev)
        cy = torch.randint(0, h, (draws,), device=dev)
        cx = torch.randint(0, w, (draws,), device=dev)
        if self.mode == "batch" and syncs_freely(dev):
            return _paste_one_box(images, targets, lam, apply, perm, cy, cx, inplace)
        ratio = torch.sqrt(1.0 - lam)
        cut_h = (h * ratio).long() * apply
        cut_w = (w * ratio).long() * apply
        if self.mode == "batch":  # rand_bbox of the official code: cut // 2 on both sides
            top, bottom = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
            left, right = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
        else:  # box size as in timm.data.mixup.rand_bbox (int() truncation), vectorised over the batch
            top, bottom = (cy - cut_h // 2).clamp(0, h), (cy + (cut_h + 1) // 2).clamp(0, h)
            left, right = (cx - cut_w // 2).clamp(0, w), (cx + (cut_w + 1) // 2).clamp(0, w)
        area = ((bottom - top) * (right - left)).to(targets.dtype) / (h * w)  # exact pasted fraction
        if self.mode == "batch":
            top, bottom, left, right = (v.expand(n) for v in (top, bottom, left, right))
            area = area.expand(n)
        weight = box_weight(images, top, bottom, left, right)
        out = torch.lerp(images, images[perm], weight, out=_out(images, inplace))
        targets = (1.0 - area[:, None]) * targets + area[:, None] * targets[perm]
        return out, targets


def _paste_one_box(
    images: torch.Tensor,
    targets: torch.Tensor,
    lam: torch.Tensor,
    apply: torch.Tensor,
    perm: torch.Tensor,
    cy: torch.Tensor,
    cx: torch.Tensor,
    inplace: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`CutMix` ``mode="batch"`` on the CPU, from its draws (one of each): the box worked
    out on the host (reading the draws is free here) and copied as one slice, nothing else.

    The same values as the batched form: the cut sizes are computed in float32 as there, the box
    is clipped the same way, and the targets are mixed with the same tensor ops.
    """
    _, _, h, w = images.shape
    if not bool(apply):  # the batch is not cut-mixed (the batched form's box is empty)
        return images, targets
    ratio = torch.sqrt(1.0 - lam)  # (1,)
    cut_h, cut_w = (ratio * _box_limits(h, w, images.device)[0][:, 0]).long().tolist()  # h * ratio, w * ratio
    y, x = int(cy), int(cx)
    y0, y1 = max(y - cut_h // 2, 0), min(y + cut_h // 2, h)  # rand_bbox of the official code, clipped
    x0, x1 = max(x - cut_w // 2, 0), min(x + cut_w // 2, w)
    if y0 == y1 or x0 == x1:
        return images, targets
    out = images if inplace else images.clone()
    out[:, :, y0:y1, x0:x1] = images[:, :, y0:y1, x0:x1][perm]  # the right side is a copy
    pasted = torch.tensor((y1 - y0) * (x1 - x0), dtype=targets.dtype, device=targets.device)
    area = pasted / (h * w)  # exact pasted fraction
    return out, (1.0 - area) * targets + area * targets[perm]


class Mixup(InPlaceAugmentation):
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

    def transform(
        self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, dev = images.shape[0], images.device
        lam = beta(self.alpha, n, dev)
        apply = torch.rand(n, device=dev) < self.p
        perm = torch.randperm(n, device=dev)
        lam = torch.where(apply, lam, torch.ones_like(lam))
        # lerp(partner, own, lam) = lam * own + (1 - lam) * partner, in one pass; lam = 1 gives own exactly
        weight = lam.to(images.dtype)[:, None, None, None]
        images = torch.lerp(images[perm], images, weight, out=_out(images, inplace))
        targets = torch.lerp(targets[perm], targets, lam.to(targets.dtype)[:, None])
        return images, targets


# --- Gaussian blur ------------------------------------------------------------------------------
class Blur(InPlaceAugmentation):
    """Gaussian blur with a per-image random sigma, applied to each image with probability ``p``.

    ``sigma ~ U(sigma[0], sigma[1])`` per image, as torchvision's ``GaussianBlur``: a sampled
    Gaussian kernel ``exp(-t^2 / 2 sigma^2)`` over ``kernel_size`` taps, normalised to sum 1,
    separable, reflect-padded, with per-image weights (:func:`separable_blur`: tap by tap for
    short kernels, batched matrix products from :data:`MATMUL_MIN_TAPS` taps; no per-sigma
    buckets, no loop over images); on the CPU only the images drawn for blurring are computed.
    ``kernel_size=3`` (default) matches the ``GaussianBlur(3, sigma=(0.1, 2.0))`` common in CIFAR
    notebooks; ``kernel_size=None`` sizes the kernel from the largest sigma
    (``2 * ceil(3 * sigma_max) + 1``, 11 taps for 1.5).

    PIL's ``ImageFilter.GaussianBlur(radius)`` (the reference paper's notebook: radius
    ``U(0.1, 1.5)`` with probability 0.3, i.e. ``Blur(sigma=(0.1, 1.5), p=0.3,
    kernel_size=None)``) takes the radius as the standard deviation, but approximates the Gaussian
    by three box blurs of the same variance (Gwosdek et al. 2011), rounds to uint8 after each
    pass and extends the edge pixels instead of reflecting. Measured on 500 CIFAR-10 (JPEG q75
    copy) training images, ours (11 taps) minus PIL's, in 0-255 pixel units: mean absolute
    difference 0.8-1.1 for sigma 0.3-1.5 (the blur itself changes pixels by 3.4 on average at
    sigma 0.5 and 14.5 at 1.5); at most 2.9-8.2 more than 5 pixels from the border for sigma
    >= 0.5, up to 56 at the border (edge handling); below sigma 0.5 PIL's three boxes are much
    wider than the Gaussian (up to 19 at sigma 0.3); at sigma 0.1 both are the identity up to
    rounding.
    """

    name = "blur"
    per_image = True

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

    def transform(
        self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        dev = images.device
        lo, hi = self.sigma
        sigma_u, apply_u = consecutive_draws(lambda m: torch.rand(m, device=dev), dev, n, n).view(2, n)
        sigma = sigma_u.mul_(hi - lo).add_(lo)  # lo + (hi - lo) * u
        apply = apply_u < self.p
        r = self.kernel_size // 2
        check(r < h and r < w, f"blur: kernel_size {self.kernel_size} is too large for {h}x{w} images")
        if r == 0:
            return images, targets
        if not syncs_freely(dev):  # the whole batch, no host sync
            blurred = separable_blur(images, gaussian_kernels(sigma, r, images.dtype))
            return torch.where(
                apply[:, None, None, None], blurred, images, out=_out(images, inplace)
            ), targets
        index = apply.nonzero()[:, 0]
        if index.numel() == 0:
            return images, targets
        kernel = gaussian_kernels(sigma.index_select(0, index), r, images.dtype)
        if index.numel() == n:
            return separable_blur(images, kernel), targets
        out = images if inplace else images.clone()
        if is_channels_last(images):  # whole images are contiguous (H, W, C) blocks: move them as such
            selected = images.permute(0, 2, 3, 1).index_select(0, index).permute(0, 3, 1, 2)
            # written back from the layout the blur computed them in (no copy before the scatter)
            out.permute(0, 2, 3, 1).index_copy_(0, index, blur_view(selected, kernel).permute(0, 2, 3, 1))
        else:
            out.index_copy_(0, index, separable_blur(images.index_select(0, index), kernel))
        return out, targets


def gaussian_kernels(sigma: torch.Tensor, radius: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N, 2 * radius + 1)`` sampled Gaussians ``exp(-t^2 / 2 sigma^2)``, one per sigma, rows summing to 1."""
    taps = _taps(radius, sigma.device)
    kernel = (taps[None, :] / sigma[:, None]).pow_(2).mul_(-0.5).exp_()  # exp(-0.5 * (t / sigma) ** 2)
    return kernel.div_(kernel.sum(dim=1, keepdim=True)).to(dtype)


@functools.lru_cache(maxsize=32)
def _taps(radius: int, device: torch.device) -> torch.Tensor:
    """The float32 tap offsets ``-radius, ..., radius`` (made once per radius)."""
    return torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)


# kernels with at least this many taps blur by matrix products: benchmarks/test_bench_blur.py on the
# CPU (AMD EPYC, 2 threads, the 58 images a p = 0.5 blur draws from 128; results/benchmarks/
# cpu-2026-12-02-025717.json and -025755.json) had the products 0.68x and 0.64x as fast at 3 taps,
# even at 5 (1.13x, 1.00x), and 1.3-1.5x, 1.7-1.9x and 2.1-2.3x as fast at 7, 9 and 11 taps
MATMUL_MIN_TAPS = 7


def separable_blur(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own symmetric 1-d ``kernel`` ``(N, K)`` along rows and columns.

    Reflect padding (the edge value is not repeated, as ``F.pad(mode="reflect")``). Short kernels
    (under :data:`MATMUL_MIN_TAPS` taps) are ``K`` multiply-adds of whole planes with per-image
    weights per pass. Longer ones are one batched matrix product per pass with a per-image banded
    matrix (:func:`blur_matrix`: the kernel's taps, with the ones that fall outside the image
    folded back onto the pixels they reflect): ``H`` multiply-adds per value instead of ``K``, but
    two BLAS calls instead of ``2K`` elementwise passes over the batch. The products sum in
    another order than the tap by tap form, so their values differ from it by rounding (about
    1e-7 in float32); on CUDA with TF32 matrix products allowed they run at TF32 precision (about
    1e-3 relative, harmless for an augmentation). A channels_last batch gives a channels_last
    result, any other a contiguous one.
    """
    out = blur_view(images, kernel)
    memory_format = torch.channels_last if is_channels_last(images) else torch.contiguous_format
    return out.contiguous(memory_format=memory_format)


def blur_view(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """:func:`separable_blur`'s values, in whatever layout they were computed in: the matrix
    products' ``(N, W, C, H)`` memory for a channels_last batch (:func:`_blur_by_matmul`), which a
    caller that copies the result anyway (a scatter into the batch) reads without a copy first."""
    if kernel.shape[1] < MATMUL_MIN_TAPS:
        return _blur_by_taps(images, kernel)
    return _blur_by_matmul(images, kernel)


def _blur_by_matmul(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """:func:`separable_blur` by matrix products, as an ``(N, C, H, W)`` view of the second
    product's memory: ``(N, W, C, H)`` for a channels_last batch, ``(N, C, H, W)`` for any other.

    Each product reads its operand where it lies (a transposed operand is a BLAS argument, not a
    copy), so nothing is copied between the two passes. On a channels_last batch the vertical
    pass goes first, as ``X^T R^T`` over the image's ``(W * C, H)`` columns, which leaves its
    result as ``(W, C * H)`` rows for the horizontal pass ``B_w @ Y``; on a contiguous batch the
    horizontal pass goes first, over the ``(C * H, W)`` rows.
    """
    n, c, h, w = images.shape
    rows = blur_matrix(kernel, h)  # (N, H, H): rows @ a column of an image
    cols = rows if w == h else blur_matrix(kernel, w)
    if is_channels_last(images):
        columns = images.permute(0, 2, 3, 1).reshape(n, h, w * c).transpose(1, 2)  # (N, W * C, H): a view
        vertical = torch.bmm(columns, rows.transpose(1, 2))  # (N, W * C, H) memory = (N, W, C * H)
        out = torch.bmm(cols, vertical.view(n, w, c * h))  # (N, W, C * H)
        return out.view(n, w, c, h).permute(0, 2, 3, 1)
    horizontal = torch.bmm(images.contiguous().view(n, c * h, w), cols.transpose(1, 2)).view(n, c, h, w)
    return torch.matmul(rows[:, None], horizontal)


def blur_matrix(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Per-image ``(N, size, size)`` matrices ``B``: ``B @ x`` is ``x`` (length ``size``) convolved
    with the symmetric ``kernel`` row ``(N, K)``, reflect-padded (``K // 2 < size``).

    Row ``i`` holds tap ``t`` at column ``reflect(i + t - K // 2)``; taps that reflect onto the
    same pixel add up. One small matrix product with a cached 0/1 ``(K, size * size)`` table.
    """
    n, taps = kernel.shape
    return (kernel @ _tap_positions(size, taps, kernel.device, kernel.dtype)).view(n, size, size)


@functools.lru_cache(maxsize=32)
def _tap_positions(size: int, taps: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(K, size * size)``: 1 where tap ``t`` of row ``i`` lands (after reflection), row-major."""
    r = taps // 2
    row = torch.arange(size)[:, None]
    col = (row + torch.arange(-r, r + 1)).abs()  # reflect at 0 ...
    col = torch.where(col >= size, 2 * (size - 1) - col, col)  # ... and at size - 1
    table = torch.zeros(taps, size * size, dtype=dtype)
    table.index_put_(
        (torch.arange(taps).repeat(size), (row * size + col).view(-1)),
        torch.ones(size * taps, dtype=dtype),
        accumulate=True,
    )
    return table.to(device)


def _blur_by_taps(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """:func:`separable_blur` tap by tap: rows, then columns.

    Reflect padding; for each pass, ``K`` multiply-adds of whole planes with per-image weights, in
    tap order. A channels_last batch is blurred as ``(N, H, W, C)`` planes (contiguous slices of
    ``W * C`` values), a contiguous one as ``(N, C, H, W)``; the result keeps the layout.
    """
    taps = kernel.shape[1]
    r = taps // 2
    weights = kernel[:, :, None, None, None]  # (N, K, 1, 1, 1): broadcast over a (C,H,W)-like plane
    channels_last = is_channels_last(images)
    planes = images.permute(0, 2, 3, 1) if channels_last else images.contiguous()
    hdim, wdim = (1, 2) if channels_last else (2, 3)
    h, w = planes.shape[hdim], planes.shape[wdim]
    # horizontal pass over the image rows (reflect-padding columns), then the vertical pass over
    # the result (reflect-padding rows): padding rows after a row-wise pass equals padding first
    padded = _reflect_pad(planes, r, wdim)
    horiz = weights[:, 0] * padded.narrow(wdim, 0, w)
    for t in range(1, taps):
        horiz.addcmul_(weights[:, t], padded.narrow(wdim, t, w))
    padded = _reflect_pad(horiz, r, hdim)
    out = weights[:, 0] * padded.narrow(hdim, 0, h)
    for t in range(1, taps):
        out.addcmul_(weights[:, t], padded.narrow(hdim, t, h))
    return out.permute(0, 3, 1, 2) if channels_last else out


def _reflect_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """``x`` reflect-padded by ``r`` along ``dim`` (the edge value is not repeated), as ``F.pad``.

    One ``cat`` of single slices (``x[r], ..., x[1], x, x[-2], ..., x[-1-r]``): cheaper than
    flipping the borders, and than ``F.pad``'s reflect on a channels_last batch.
    """
    size = x.shape[dim]
    left = [x.narrow(dim, k, 1) for k in range(r, 0, -1)]
    right = [x.narrow(dim, size - 1 - k, 1) for k in range(1, r + 1)]
    return torch.cat([*left, x, *right], dim)


# --- random erasing and Cutout ------------------------------------------------------------------
class RandomErasing(InPlaceAugmentation):
    """Random erasing (Zhong et al. 2020, arXiv:1708.04896), batched.

    With probability ``p`` per image, one box of area ``U(area)`` x image area and aspect ratio
    log-uniform in ``aspect`` is filled. Like the paper (and timm), a box that does not fit is
    re-drawn: ``attempts`` candidates are drawn per image at once and the first that fits is used
    (none fits: the image is left alone). ``mode``: ``"pixel"`` per-pixel standard normal values
    (the paper's random fill, in normalised space; timm's ``mode='pixel'``), ``"rand"`` one normal
    colour per box, ``"const"`` zeros (the dataset-mean colour, torchvision's default).
    Only the pixels inside the box change. torchvision's ``RandomErasing(p, scale, ratio,
    value=0)`` after ``Normalize`` is ``p=p, area=scale, aspect=ratio, mode="const"``.
    """

    name = "erasing"
    per_image = True
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

    def transform(
        self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = images.shape
        dev, k = images.device, self.attempts
        a_lo, a_hi = self.area
        log_lo, log_hi = math.log(self.aspect[0]), math.log(self.aspect[1])
        # the uniform draws in their order: (N, K) candidate areas, (N, K) aspect ratios, then per
        # image whether to erase, the top and the left offset
        u = consecutive_draws(lambda m: torch.rand(m, device=dev), dev, n * k, n * k, n, n, n)
        area_u, aspect_u = u[: 2 * n * k].view(2, n, k)
        erase_u, offset_u = u[2 * n * k : 2 * n * k + n], u[2 * n * k + n :].view(2, n)
        target_area = area_u.mul_(a_hi - a_lo).add_(a_lo).mul_(h * w)
        aspect = aspect_u.mul_(log_hi - log_lo).add_(log_lo).exp_()
        # heights and widths (2, N, K) side by side, so that each step is one op for both; box
        # sizes and offsets stay whole numbers in float32 (exact; no integer conversions)
        sides = torch.stack([target_area * aspect, target_area / aspect]).sqrt_().round_()
        size, size_plus_1, size_minus_1 = _box_limits(h, w, dev)  # (2, 1): [[h], [w]], ...
        fits = ((sides > 0) & (sides < size[:, :, None])).all(0)  # as in the paper: w < W, h < H
        any_fits, first = fits.max(dim=1)  # the first candidate that fits (max gives the first maximum)
        box = sides.gather(2, first[None, :, None].expand(2, n, 1))[:, :, 0]  # (2, N): height, width
        apply = (erase_u < self.p) & any_fits
        # top and left, uniform over the offsets that keep the box inside: trunc is .long() here (>= 0)
        corner = (offset_u * (size_plus_1 - box)).trunc_().clamp_(max=size_minus_1)
        box *= apply  # an image not erased gets an empty box
        if syncs_freely(dev):  # the CPU: the boxes written one by one into the batch's memory
            colour = torch.randn(n, c, device=dev, dtype=images.dtype) if self.mode == "rand" else None
            tops, lefts, heights, widths = torch.cat([corner, box]).long().tolist()
            boxes = [(i, tops[i], lefts[i], heights[i], widths[i]) for i in range(n) if heights[i]]
            noise = None
            if self.mode == "pixel":  # normals for exactly the erased values, in memory order
                count = c * sum(height * width for _, _, _, height, width in boxes)
                noise = torch.randn(count, device=dev, dtype=images.dtype)
            return fill_boxes(images, boxes, colour=colour, noise=noise, inplace=inplace), targets
        (top, left), (box_h, box_w) = corner, box
        if self.mode == "pixel":  # one fused where, no host sync (counting the erased pixels would need one)
            mask = box_mask(top, top + box_h, left, left + box_w, h, w)[:, None]
            return torch.where(mask, torch.randn_like(images), images, out=_out(images, inplace)), targets
        if self.mode == "rand":
            fill = per_image_colour(images, torch.randn(n, c, device=dev, dtype=images.dtype))
        else:
            fill = torch.zeros((), device=dev, dtype=images.dtype)
        weight = box_weight(images, top, top + box_h, left, left + box_w)
        return torch.lerp(images, fill, weight, out=_out(images, inplace)), targets


@functools.lru_cache(maxsize=32)
def _box_limits(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(2, 1)`` float32 columns ``[[h], [w]]``, ``[[h + 1], [w + 1]]`` and ``[[h - 1], [w - 1]]``,
    made once per image size: the bounds of (height, width) pairs of box sizes and offsets."""
    size = torch.tensor([[h], [w]], dtype=torch.float32, device=device)
    return size, size + 1, size - 1


# a CPU tensor's memory as integers of its element size: writing a value's bit pattern writes the
# value, whatever the floating-point type (numpy has no bfloat16)
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _host_bits(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor's memory, each element as an integer of its size."""
    return tensor.detach().view(_BITS[tensor.element_size()]).numpy()


def fill_boxes(
    images: torch.Tensor,
    boxes: Sequence[tuple[int, int, int, int, int]],
    *,
    colour: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Fill boxes of a CPU batch: ``boxes`` are ``(image, top, left, height, width)``, each
    written as one numpy slice of the batch's memory (the CPU path of erasing and Cutout).

    The fill is 0 (``colour`` and ``noise`` ``None``); or image ``i``'s colour ``colour[i]``
    (``(N, C)``); or ``noise``, the boxes' values one after another, each box's in the batch's
    memory order: ``(row, column, channel)`` for a channels_last batch, ``(channel, row, column)``
    for a contiguous one (what ``masked_scatter`` with the boxes' mask gives). Only the values
    inside the boxes are written, bit for bit as given. A slice assignment costs about a
    microsecond here, a tensor op 5-10: the few dozen boxes of a batch cost less written one by one
    than built as index and weight tensors. A new batch unless ``inplace`` (then ``images``
    itself when it is channels_last or contiguous); ``images`` itself when there is no box.
    """
    if not boxes:
        return images
    channels_last = is_channels_last(images)
    if inplace and (channels_last or images.is_contiguous()):
        out = images
    else:
        out = images.clone(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    pixels = _host_bits(out.permute(0, 2, 3, 1) if channels_last else out)  # (N, H, W, C) or (N, C, H, W)
    colours = None if colour is None else _host_bits(colour)
    values = None if noise is None else _host_bits(noise)
    start = 0
    for i, top, left, height, width in boxes:
        rows, cols = slice(top, top + height), slice(left, left + width)
        region = pixels[i, rows, cols] if channels_last else pixels[i, :, rows, cols]
        if values is not None:
            region[...] = values[start : start + region.size].reshape(region.shape)
            start += region.size
        elif colours is not None:
            region[...] = colours[i] if channels_last else colours[i][:, None, None]
        else:
            region[...] = 0
    return out


class Cutout(InPlaceAugmentation):
    """Cutout (DeVries & Taylor 2017, arXiv:1708.04552): zero a ``size x size`` square.

    Per image the square's centre is uniform over the image and the square is clipped at the
    borders, as in the paper's code; the fill is 0 in normalised space (the dataset-mean colour,
    as the paper applies the mask after normalising). ``size=16`` is their CIFAR-10 setting
    (8 for CIFAR-100); applied to each image with probability ``p`` (1.0 in the paper).
    """

    name = "cutout"
    per_image = True

    def __init__(self, size: int = 16, p: float = 1.0) -> None:
        check(int(size) == size and size >= 1, f"cutout: size must be an int >= 1, got {size!r}")
        self.size, self.p = int(size), check_prob("cutout", p)

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "p": self.p}

    def transform(
        self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        dev = images.device
        cy = torch.randint(0, h, (n,), device=dev)
        cx = torch.randint(0, w, (n,), device=dev)
        apply = torch.rand(n, device=dev) < self.p
        half = self.size // 2
        top, bottom = (cy - half).clamp(0, h), (cy - half + self.size).clamp(0, h)
        left, right = (cx - half).clamp(0, w), (cx - half + self.size).clamp(0, w)
        bottom = torch.where(apply, bottom, top)  # an empty box when not applied
        if syncs_freely(dev):  # the CPU: each square written into the batch's memory
            tops, bottoms, lefts, rights = torch.stack([top, bottom, left, right]).tolist()
            boxes = [
                (i, tops[i], lefts[i], bottoms[i] - tops[i], rights[i] - lefts[i])
                for i in range(n)
                if bottoms[i] > tops[i] and rights[i] > lefts[i]
            ]
            return fill_boxes(images, boxes, inplace=inplace), targets
        weight = box_weight(images, top, bottom, left, right)
        zero = torch.zeros((), device=dev, dtype=images.dtype)
        return torch.lerp(images, zero, weight, out=_out(images, inplace)), targets

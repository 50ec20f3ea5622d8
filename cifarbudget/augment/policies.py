"""Learned and random augmentation policies, batched on the device: AutoAugment, RandAugment, TrivialAugment.

Each policy is a uint8-stage augmentation (``stage = "uint8"``, see :mod:`.pipeline`): it takes a
raw ``(N, 3, H, W)`` uint8 batch on the training device and gives every image its own operations
and magnitudes, with torchvision's semantics (``torchvision.transforms.AutoAugment``,
``RandAugment``, ``TrivialAugmentWide`` on tensors, whose per-operation code is
``torchvision.transforms.autoaugment._apply_op``):

- :class:`AutoAugment` (Cubuk et al. 2019, "AutoAugment: Learning Augmentation Strategies from
  Data", arXiv:1805.09501): one of 25 learned sub-policies per image, each two (operation,
  probability, magnitude bin of 10) steps; the CIFAR-10 policy by default.
- :class:`RandAugment` (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation
  with a reduced search space", arXiv:1909.13719): ``num_ops`` operations drawn uniformly from
  14, all at magnitude bin ``magnitude`` of ``num_magnitude_bins``.
- :class:`TrivialAugmentWide` (Müller & Hutter 2021, "TrivialAugment: Tuning-free Yet
  State-of-the-Art Data Augmentation", arXiv:2103.10158): one operation drawn uniformly from 14,
  at a magnitude bin drawn uniformly, from the "wide" magnitude ranges.

How the batch is processed: a policy first draws its whole *plan* for the batch as tensors (per
image and step: operation, magnitude bin, sign), then runs the steps in order. In each step the
images are grouped by operation (one ``argsort`` and one ``bincount``, a single host sync per
step); each operation runs once on the sub-batch that drew it, vectorised over its images with
per-image parameters looked up from small per-(op, bin, sign) tables. The five geometric
operations (shears, translations, rotation) run together, each image with its own affine map:
with nearest interpolation as one ``gather`` of the source pixels ``grid_sample`` would pick
(precomputed per image size), with bilinear as one ``grid_sample`` on per-image grids. No Python
loop runs over images. The random draws have fixed shapes, so the RNG stream depends on
the batch shape only.

Agreement with torchvision (``tests/test_policies.py``): every operation gives the same uint8
pixels as torchvision's tensor functional applied to each image separately (max difference 0 on
synthetic and random images), because each computes the same float32 arithmetic: the blends use
torchvision's factor and ``1 - factor`` rounded from float64 to float32, the sharpness blur is
computed exactly from integer sums, equalize follows torchvision's step/lookup-table rule with
batched histograms, and each sampling grid is built as torchvision builds it (one matrix at a
time), from inverse matrices computed in float64 with Python's math.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from cifarbudget.augment.pipeline import BatchAugmentation, check

__all__ = [
    "AUTOAUGMENT_POLICIES",
    "OPS",
    "AutoAugment",
    "Plan",
    "PolicyAugmentation",
    "RandAugment",
    "TrivialAugmentWide",
    "apply_op",
    "magnitude_space",
]

# Every operation, in the order of torchvision's RandAugment/TrivialAugmentWide op space, then Invert
# (AutoAugment only). The five geometric ones are contiguous: they share one grid_sample.
OPS: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
OP_INDEX = {name: i for i, name in enumerate(OPS)}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
_GEO_LO, _GEO_HI = OP_INDEX["ShearX"], OP_INDEX["Rotate"] + 1
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")
SIGNED = (*GEOMETRIC, *BLENDS)
# RandAugment and TrivialAugmentWide draw from these 14 (no Invert), uniformly.
RANDOM_OPS: tuple[str, ...] = OPS[:-1]
INTERPOLATIONS = ("nearest", "bilinear")

# The sub-policies of Cubuk et al. 2019 (appendix; as in torchvision's AutoAugmentPolicy): pairs of
# (operation, probability, magnitude bin in 0..9 or None).
_Step = tuple[str, float, int | None]
AUTOAUGMENT_POLICIES: dict[str, tuple[tuple[_Step, _Step], ...]] = {
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
    "svhn": (
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)),
        (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)),
        (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)),
        (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)),
        (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)),
        (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)),
        (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)),
        (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ),
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
}


# --- magnitudes -----------------------------------------------------------------------------------
def magnitude_space(space: str, num_bins: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """The magnitude of each operation at each bin, float32 ``(num_bins,)`` on the CPU, unsigned.

    ``space="standard"``: the ranges of AutoAugment and RandAugment (shear 0.3, translation
    150/331 of the image side, rotation 30 degrees, enhancement factors 1 +- 0.9, posterize 8..4
    bits, solarize threshold 255..0). ``space="wide"``: TrivialAugmentWide's (shear 0.99,
    translation 32 pixels, rotation 135 degrees, factors 1 +- 0.99, posterize 8..2 bits).
    Computed with the same float32 ``linspace`` as torchvision, so the values are identical.
    Operations without a magnitude (Identity, AutoContrast, Equalize, Invert) get zeros.
    """
    check(space in ("standard", "wide"), f"magnitude space must be 'standard' or 'wide', got {space!r}")
    wide = space == "wide"
    shear, rotate, factor = (0.99, 135.0, 0.99) if wide else (0.3, 30.0, 0.9)
    tx, ty = (32.0, 32.0) if wide else (150.0 / 331.0 * width, 150.0 / 331.0 * height)
    post_steps = 6 if wide else 4
    bins = torch.arange(num_bins)
    posterize = (8 - (bins / ((num_bins - 1) / post_steps)).round().int()).float()
    space_: dict[str, torch.Tensor] = {
        "ShearX": torch.linspace(0.0, shear, num_bins),
        "ShearY": torch.linspace(0.0, shear, num_bins),
        "TranslateX": torch.linspace(0.0, tx, num_bins),
        "TranslateY": torch.linspace(0.0, ty, num_bins),
        "Rotate": torch.linspace(0.0, rotate, num_bins),
        "Posterize": posterize,
        "Solarize": torch.linspace(255.0, 0.0, num_bins),
    }
    for name in BLENDS:
        space_[name] = torch.linspace(0.0, factor, num_bins)
    for name in ("Identity", "AutoContrast", "Equalize", "Invert"):
        space_[name] = torch.zeros(num_bins)
    return space_


def _inverse_affine(
    center: tuple[float, float], angle: float, translate: tuple[float, float], shear: tuple[float, float]
) -> list[float]:
    """The inverse of ``T * C * R(angle) * ShY * ShX * C^-1`` (scale 1) as a row-major 2x3 list.

    Pixel coordinates relative to the image centre; ``angle`` and ``shear`` in degrees. The
    closed form of the rotation-shear block and its inverse (its determinant is 1) is the one
    torchvision documents for ``F.affine``; the arithmetic is done in the same order, in float64.
    """
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    (cx, cy), (tx, ty) = center, translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _geometric_matrix(name: str, magnitude: float, height: int, width: int) -> list[float]:
    """The inverse affine matrix torchvision's policies use for a geometric op at ``magnitude``.

    Shears are about the top-left corner (``center=[0, 0]``) by ``atan(magnitude)``; translations
    are ``int(magnitude)`` pixels; rotations are about the centre, counter-clockwise.
    """
    corner = (-0.5 * width, -0.5 * height)  # pixel (0, 0) relative to the image centre
    if name == "ShearX":
        return _inverse_affine(corner, 0.0, (0.0, 0.0), (math.degrees(math.atan(magnitude)), 0.0))
    if name == "ShearY":
        return _inverse_affine(corner, 0.0, (0.0, 0.0), (0.0, math.degrees(math.atan(magnitude))))
    if name == "TranslateX":
        return _inverse_affine((0.0, 0.0), 0.0, (float(int(magnitude)), 0.0), (0.0, 0.0))
    if name == "TranslateY":
        return _inverse_affine((0.0, 0.0), 0.0, (0.0, float(int(magnitude))), (0.0, 0.0))
    if name == "Rotate":
        return _inverse_affine((0.0, 0.0), -magnitude, (0.0, 0.0), (0.0, 0.0))
    raise ValueError(f"not a geometric operation: {name}")


@dataclass(frozen=True)
class _Tables:
    """Per-(operation, bin, sign) parameters on the device, one row per *entry*
    ``(op * num_bins + bin) * 2 + negative``.

    The geometric tables hold only the geometric ops' entries (row ``entry - geo_offset``): the
    sampling grid torchvision would build, and for nearest interpolation the source pixel it picks
    (flat index into ``H * W``) and whether that pixel lies inside the image.
    """

    num_bins: int
    interpolation: str  # of the geometric ops: "nearest" or "bilinear"
    geo_offset: int  # the entry of the first geometric op's first bin
    factor: torch.Tensor  # float32 (entries,): the blend factor 1 + m (float32 of the float64 value)
    other: torch.Tensor  # float32 (entries,): 1 - factor, computed in float64 as torchvision does
    threshold: torch.Tensor  # uint8 (entries,): ceil of the solarize threshold
    mask: torch.Tensor  # uint8 (entries,): posterize bit mask
    grid: torch.Tensor  # float32 (geometric entries, H, W, 2): grid_sample grids (bilinear only)
    source: torch.Tensor  # int64 (geometric entries, 1, H * W): nearest source pixel (nearest only)
    inside: torch.Tensor  # bool (geometric entries, 1, H * W): that pixel is inside (nearest only)


def _build_tables(
    space: str, num_bins: int, height: int, width: int, device: torch.device, interpolation: str
) -> _Tables:
    mags = magnitude_space(space, num_bins, height, width)
    n_ops = len(OPS)
    factor = torch.ones(n_ops, num_bins, 2, dtype=torch.float64)
    other = torch.zeros(n_ops, num_bins, 2, dtype=torch.float64)
    threshold = torch.zeros(n_ops, num_bins, 2, dtype=torch.uint8)
    mask = torch.full((n_ops, num_bins, 2), 255, dtype=torch.uint8)
    grids = []
    for name in OPS:
        k = OP_INDEX[name]
        values = [float(v) for v in mags[name].tolist()]  # float32 values, as torchvision's float(...)
        for b, value in enumerate(values):
            for neg in (0, 1):
                m = -value if (neg and name in SIGNED) else value
                if name in BLENDS:
                    factor[k, b, neg] = 1.0 + m
                    other[k, b, neg] = 1.0 - (1.0 + m)
                elif name in GEOMETRIC:
                    matrix = _geometric_matrix(name, m, height, width)
                    theta = torch.tensor(matrix, dtype=torch.float32, device=device).view(1, 2, 3)
                    grids.append(_affine_grid(theta, height, width))  # one at a time, as torchvision
                elif name == "Posterize":
                    mask[k, b, neg] = (0xFF << (8 - int(m))) & 0xFF
                elif name == "Solarize":
                    threshold[k, b, neg] = math.ceil(m)  # m <= 255
    grid = torch.cat(grids)
    hw = height * width
    source = torch.empty(0, 1, hw, dtype=torch.long, device=device)
    inside = torch.empty(0, 1, hw, dtype=torch.bool, device=device)
    if interpolation == "nearest":
        # The pixel nearest interpolation picks: sample an image whose values are the pixels' own
        # flat indices, plus an all-ones channel that comes out 0 where the source lies outside.
        coords = torch.arange(hw, dtype=torch.float32, device=device).view(1, 1, height, width)
        probe = torch.cat([coords, torch.ones_like(coords)], dim=1).expand(len(grid), -1, -1, -1)
        picked = F.grid_sample(probe, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        source = picked[:, 0].round().long().view(-1, 1, hw)
        inside = (picked[:, 1] > 0.5).view(-1, 1, hw)
        grid = grid[:0]  # only the gather tables are needed
    return _Tables(
        num_bins=num_bins,
        interpolation=interpolation,
        geo_offset=_GEO_LO * num_bins * 2,
        factor=factor.float().view(-1).to(device),
        other=other.float().view(-1).to(device),
        threshold=threshold.view(-1).to(device),
        mask=mask.view(-1).to(device),
        grid=grid,
        source=source,
        inside=inside,
    )


# --- the batched operations -----------------------------------------------------------------------
# The colour operations compute on float32 copies of the uint8 pixels (the same float32 values
# torchvision's mixed uint8 * float arithmetic produces, and faster on the CPU), in place where
# possible: on the CPU every fresh batch-sized buffer costs page faults that outweigh the arithmetic.
def _grayscale(xf: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma ``(N, 1, H, W)`` of float pixel values, truncated to whole values as
    torchvision's ``rgb_to_grayscale`` truncates to uint8 (the luma is below 255, never negative).
    The products are rounded and summed in torchvision's order: ``(0.2989 r + 0.587 g) + 0.114 b``."""
    gray = xf[:, 0:1] * 0.2989
    term = xf[:, 1:2] * 0.587
    gray += term
    gray += torch.mul(xf[:, 2:3], 0.114, out=term)
    return gray.trunc_()


def _blend(xf: torch.Tensor, other: torch.Tensor | None, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``f * x + g * other`` clamped to 0..255 and truncated to uint8; ``f``, ``g`` float32 ``(N,)``.

    Overwrites ``xf`` and ``other``. The two products and the sum are rounded separately, as in
    torchvision's ``_blend``.
    """
    out = xf.mul_(f.view(-1, 1, 1, 1))
    if other is not None:  # brightness blends with black: g * 0 adds nothing
        out += other.mul_(g.view(-1, 1, 1, 1))
    return out.clamp_(0, 255).to(torch.uint8)


def _sharpness_blur(xf: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (weights 1, centre 5, sum 13) on the interior, border pixels kept.

    The filtered value is ``round(S / 13)`` for the integer weighted sum ``S`` (exact in float32,
    from shifted slices); ``S / 13`` is never within 1/26 of a half-integer, so this equals
    torchvision's float32 convolution with weights ``w / 13``, rounded to uint8, exactly.
    """
    rows = xf[:, :, :-2] + xf[:, :, 1:-1]  # vertical 3-sums, (N, C, H-2, W)
    rows += xf[:, :, 2:]
    interior = rows[..., :-2] + rows[..., 1:-1]
    interior += rows[..., 2:]
    interior += torch.mul(xf[:, :, 1:-1, 1:-1], 4.0, out=rows[..., 1:-1])  # rows is no longer needed
    out = xf.clone()
    out[:, :, 1:-1, 1:-1] = interior.div_(13.0).round_()
    return out


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each image's channels to 0..255 (channels with one value are left as they are)."""
    lo = x.amin(dim=(-2, -1), keepdim=True).float()
    hi = x.amax(dim=(-2, -1), keepdim=True).float()
    scale = 255.0 / (hi - lo)
    flat = ~torch.isfinite(scale)
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    scale = torch.where(flat, torch.ones_like(scale), scale)
    return x.float().sub_(lo).mul_(scale).clamp_(0, 255).to(torch.uint8)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per image and channel, with torchvision's (and PIL's) rule.

    All ``N * C`` histograms come from one ``bincount`` over values offset by ``256 * channel``.
    ``step = (pixels - count of the channel's largest value) // 255``; a channel with ``step == 0``
    is left as it is; otherwise value ``v`` maps to ``(cumsum[v - 1] + step // 2) // step``.
    """
    n, c, h, w = x.shape
    rows = n * c
    key = x.reshape(rows, h * w).int()  # int32 keys: bincount and index_select are faster than on int64
    key += torch.arange(0, rows * 256, 256, device=x.device, dtype=torch.int32)[:, None]  # + 256 * row
    hist = torch.bincount(key.view(-1), minlength=rows * 256).view(rows, 256)
    top = hist.gather(1, x.reshape(rows, h * w).amax(dim=1, keepdim=True).long())  # largest value's count
    step = (h * w - top) // 255  # (rows, 1)
    lut = (hist.cumsum(1) + step // 2) // step.clamp_min(1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp_(0, 255)
    lut = torch.where(step == 0, torch.arange(256, device=x.device), lut)  # identity lookup
    return lut.to(torch.uint8).view(-1).index_select(0, key.view(-1)).view(n, c, h, w)


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grids ``(N, H, W, 2)`` for inverse matrices ``theta`` ``(N, 2, 3)`` in centred pixels.

    As torchvision builds its grid: pixel centres relative to the image centre, mapped by
    ``theta`` and normalised by half the image size (``grid_sample(align_corners=False)``).
    """
    n, dev = theta.shape[0], theta.device
    base = torch.empty(1, height, width, 3, dtype=theta.dtype, device=dev)
    base[..., 0].copy_(torch.linspace(-width * 0.5 + 0.5, width * 0.5 - 0.5, steps=width, device=dev))
    base[..., 1].copy_(
        torch.linspace(-height * 0.5 + 0.5, height * 0.5 - 0.5, steps=height, device=dev).unsqueeze(-1)
    )
    base[..., 2].fill_(1)
    half = torch.tensor([0.5 * width, 0.5 * height], dtype=theta.dtype, device=dev)
    scaled = theta.transpose(1, 2) / half  # (N, 3, 2)
    grid = torch.bmm(base.view(1, height * width, 3).expand(n, -1, -1), scaled)
    return grid.view(n, height, width, 2)


def _warp(x: torch.Tensor, geo: torch.Tensor, tables: _Tables, fill: torch.Tensor | None) -> torch.Tensor:
    """Resample each image by its own geometric op; pixels from outside get 0 or ``fill``.

    ``geo`` (int64 ``(N,)``) are the images' rows in the geometric tables. Nearest interpolation
    is a gather of the source pixels ``grid_sample`` picks (exact uint8 copies); bilinear runs
    ``grid_sample`` on the images' grids.
    """
    n, c, h, w = x.shape
    if tables.interpolation == "nearest":
        source, inside = tables.source.index_select(0, geo), tables.inside.index_select(0, geo)
        out = x.reshape(n, c, h * w).gather(2, source.expand(n, c, h * w))
        out.mul_(inside)  # (a uint8 product: much faster than torch.where on the CPU)
        if fill is not None:
            out = out + fill.round().to(torch.uint8).view(1, c, 1) * ~inside
        return out.view(n, c, h, w)
    img = x.float()
    if fill is not None:  # an extra all-ones channel marks the pixels that came from inside
        img = torch.cat([img, torch.ones(n, 1, h, w, device=x.device)], dim=1)
    out = F.grid_sample(
        img, tables.grid.index_select(0, geo), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    if fill is not None:
        inside, out = out[:, -1:], out[:, :-1]
        out = out * inside + (1.0 - inside) * fill.view(1, c, 1, 1)
    return torch.round(out).to(torch.uint8)


def apply_op(
    x: torch.Tensor,
    op: int,
    bins: torch.Tensor,
    negative: torch.Tensor,
    tables: _Tables,
    *,
    fill: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply operation ``OPS[op]`` to every image of ``x`` (uint8), each at its own bin and sign.

    ``bins`` (int64) and ``negative`` (bool) are ``(N,)``: each image's magnitude bin and whether
    its signed magnitude is negated; ``tables`` come from :meth:`PolicyAugmentation.tables` (and
    fix the interpolation); ``fill`` is float32 ``(3,)`` or ``None`` (0).
    """
    entries = (op * tables.num_bins + bins) * 2 + negative.long()
    return _apply_entries(x, op, entries, tables, fill)


def _apply_entries(
    x: torch.Tensor,
    op: int,
    entries: torch.Tensor,
    tables: _Tables,
    fill: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`apply_op` with each image's (op, bin, sign) as one flat table index."""
    name = OPS[op]
    if name == "Identity":
        return x
    if name in GEOMETRIC:
        return _warp(x, entries - tables.geo_offset, tables, fill)
    if name in BLENDS:
        f, g = tables.factor.index_select(0, entries), tables.other.index_select(0, entries)
        xf = x.float()
        if name == "Brightness":
            return _blend(xf, None, f, g)
        if name == "Color":
            return _blend(xf, _grayscale(xf), f, g)
        if name == "Contrast":
            return _blend(xf, _grayscale(xf).mean(dim=(-3, -2, -1), keepdim=True), f, g)
        if x.shape[-1] <= 2 or x.shape[-2] <= 2:  # Sharpness: no interior to blur
            return x
        return _blend(xf, _sharpness_blur(xf), f, g)
    if name == "Posterize":
        return x & tables.mask.index_select(0, entries).view(-1, 1, 1, 1)
    if name == "Solarize":  # exact: for an integer x, x >= t iff x >= ceil(t)
        above = x >= tables.threshold.index_select(0, entries).view(-1, 1, 1, 1)
        return x ^ above.to(torch.uint8).mul_(255)  # 255 - x == x ^ 255
    if name == "AutoContrast":
        return _autocontrast(x)
    if name == "Equalize":
        return _equalize(x)
    if name == "Invert":
        return 255 - x
    raise ValueError(f"unknown operation {name!r}")


# --- the policies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What a policy does to a batch: per image and step, operation index (into :data:`OPS`),
    magnitude bin and whether a signed magnitude is negated; each ``(N, steps)`` on the device.
    A step an image skips (AutoAugment's probabilities) has operation ``Identity``."""

    ops: torch.Tensor  # int64
    bins: torch.Tensor  # int64
    negative: torch.Tensor  # bool


class PolicyAugmentation(BatchAugmentation):
    """Shared machinery: parameter checks, magnitude tables per image size and device, and
    :meth:`apply`, which runs a :class:`Plan` step by step, grouped by operation."""

    stage = "uint8"
    per_image = True  # each image draws its own operations (Plan)
    space: ClassVar[str] = "standard"

    def __init__(self, num_bins: int, fill: float | Sequence[float] | None, interpolation: str) -> None:
        check(
            interpolation in INTERPOLATIONS,
            f"{self.name}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}",
        )
        self.num_bins, self.interpolation = num_bins, interpolation
        self.fill = _check_fill(self.name, fill)
        self._tables: dict[tuple[int, int, str], _Tables] = {}

    def _common_params(self) -> dict[str, Any]:
        return {"fill": self.fill, "interpolation": self.interpolation}

    def tables(self, height: int, width: int, device: torch.device) -> _Tables:
        key = (height, width, str(device))
        if key not in self._tables:
            self._tables[key] = _build_tables(
                self.space, self.num_bins, height, width, device, self.interpolation
            )
        return self._tables[key]

    def sample(self, n: int, device: torch.device) -> Plan:
        """Draw the plan for a batch of ``n`` images (torch's global RNG on ``device``)."""
        raise NotImplementedError

    def apply(self, images: torch.Tensor, plan: Plan) -> torch.Tensor:
        """Run ``plan`` on a uint8 batch; returns a new tensor (the input is not modified)."""
        check(
            images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3,
            f"{self.name}: expects a uint8 batch (N, 3, H, W), got {images.dtype} {tuple(images.shape)}",
        )
        n, _, h, w = images.shape
        tables = self.tables(h, w, images.device)
        fill = None
        if self.fill is not None:
            fill = torch.tensor(self.fill, dtype=torch.float32, device=images.device)
        out = images
        positions = torch.arange(n, device=images.device)
        # each image's (op, bin, sign) per step as one row of the flat parameter tables
        all_entries = (plan.ops * tables.num_bins + plan.bins) * 2 + plan.negative.long()
        for step in range(plan.ops.shape[1]):
            ops = plan.ops[:, step]
            counts = torch.bincount(ops, minlength=len(OPS)).tolist()  # the step's one host sync
            if counts[0] == n:  # every image skips this step
                continue
            starts = [0]
            for count in counts:
                starts.append(starts[-1] + count)
            # Sort the batch by operation: each operation's images are then one contiguous slice.
            order = torch.argsort(ops, stable=True)
            entries = all_entries[:, step].index_select(0, order)
            xs = out.index_select(0, order)  # a copy: the input batch is never modified
            # The geometric operations are contiguous in OPS: one warp with per-image matrices.
            lo, hi = starts[_GEO_LO], starts[_GEO_HI]
            if hi > lo:
                geo = entries[lo:hi] - tables.geo_offset
                xs[lo:hi] = _warp(xs[lo:hi], geo, tables, fill)
            for k, name in enumerate(OPS):
                lo, hi = starts[k], starts[k + 1]
                if name == "Identity" or name in GEOMETRIC or hi == lo:
                    continue
                xs[lo:hi] = _apply_entries(xs[lo:hi], k, entries[lo:hi], tables, fill)
            inverse = torch.empty_like(order).index_copy_(0, order, positions)
            out = xs.index_select(0, inverse)
        return out if out is not images else images.clone()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check(
            images.dtype == torch.uint8,
            f"{self.name}: runs on the uint8 batch (stage 'uint8'), got {images.dtype} images",
        )
        return self.apply(images, self.sample(images.shape[0], images.device)), targets


def _check_fill(name: str, fill: float | Sequence[float] | None) -> list[float] | None:
    if fill is None:
        return None
    values = [fill] * 3 if isinstance(fill, (int, float)) else list(fill)
    check(
        len(values) == 3 and all(isinstance(v, (int, float)) and 0 <= v <= 255 for v in values),
        f"{name}: fill must be a number or 3 numbers in [0, 255] (pixel values), got {fill!r}",
    )
    return [float(v) for v in values]


def _check_int(name: str, what: str, value: Any, lo: int, hi: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    ok = ok and (hi is None or value <= hi)
    bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    check(ok, f"{name}: {what} must be an int {bound}, got {value!r}")
    return int(value)


class AutoAugment(PolicyAugmentation):
    """AutoAugment (Cubuk et al. 2019, arXiv:1805.09501), the learned policy, per image.

    Each image draws one of the policy's 25 sub-policies; each of its two steps applies with
    the step's probability, at the step's magnitude bin (of 10) with a random sign for signed
    operations, as ``torchvision.transforms.AutoAugment``.

    :param policy: ``"cifar10"`` (default; learned on reduced CIFAR-10), ``"svhn"`` or ``"imagenet"``.
    :param fill: pixel value(s) for the area a geometric op moves in; ``None``: 0 (black).
    :param interpolation: ``"nearest"`` (default, as torchvision) or ``"bilinear"``.
    """

    name = "autoaugment"

    def __init__(
        self,
        policy: str = "cifar10",
        fill: float | Sequence[float] | None = None,
        interpolation: str = "nearest",
    ) -> None:
        check(
            policy in AUTOAUGMENT_POLICIES,
            f"autoaugment: policy must be one of {sorted(AUTOAUGMENT_POLICIES)}, got {policy!r}",
        )
        super().__init__(10, fill, interpolation)
        self.policy = policy
        steps = AUTOAUGMENT_POLICIES[policy]
        self._ops = torch.tensor([[OP_INDEX[s[0]] for s in sub] for sub in steps])
        self._probs = torch.tensor([[s[1] for s in sub] for sub in steps], dtype=torch.float32)
        self._bins = torch.tensor([[s[2] or 0 for s in sub] for sub in steps])
        self._device_tables: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def params(self) -> dict[str, Any]:
        return {"policy": self.policy, **self._common_params()}

    def sample(self, n: int, device: torch.device) -> Plan:
        key = str(device)
        if key not in self._device_tables:
            self._device_tables[key] = (self._ops.to(device), self._probs.to(device), self._bins.to(device))
        ops, probs, bins = self._device_tables[key]
        sub = torch.randint(len(ops), (n,), device=device)
        draw = torch.rand(n, 2, device=device)
        negative = torch.randint(2, (n, 2), device=device) == 0
        applied = draw <= probs[sub]  # torchvision: an op runs when its draw <= its probability
        return Plan(torch.where(applied, ops[sub], 0), bins[sub], negative)


class RandAugment(PolicyAugmentation):
    """RandAugment (Cubuk et al. 2020, arXiv:1909.13719): ``num_ops`` uniform ops at one magnitude.

    Each image draws ``num_ops`` operations uniformly (with replacement) from 14 (Identity,
    ShearX/Y, TranslateX/Y, Rotate, Brightness, Color, Contrast, Sharpness, Posterize, Solarize,
    AutoContrast, Equalize), each at magnitude bin ``magnitude`` of ``num_magnitude_bins`` with a
    random sign, as ``torchvision.transforms.RandAugment``.

    :param num_ops: operations per image (N in the paper; default 2).
    :param magnitude: magnitude bin (M; default 9), ``0 <= magnitude < num_magnitude_bins``.
    :param num_magnitude_bins: bins spanning each op's range (default 31, M = 30 the strongest).
    :param fill: pixel value(s) for the area a geometric op moves in; ``None``: 0 (black).
    :param interpolation: ``"nearest"`` (default, as torchvision) or ``"bilinear"``.
    """

    name = "randaugment"

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        fill: float | Sequence[float] | None = None,
        interpolation: str = "nearest",
    ) -> None:
        bins = _check_int("randaugment", "num_magnitude_bins", num_magnitude_bins, 2)
        super().__init__(bins, fill, interpolation)
        self.num_ops = _check_int("randaugment", "num_ops", num_ops, 1)
        self.magnitude = _check_int("randaugment", "magnitude", magnitude, 0, bins - 1)

    def params(self) -> dict[str, Any]:
        return {
            "num_ops": self.num_ops,
            "magnitude": self.magnitude,
            "num_magnitude_bins": self.num_bins,
            **self._common_params(),
        }

    def sample(self, n: int, device: torch.device) -> Plan:
        ops = torch.randint(len(RANDOM_OPS), (n, self.num_ops), device=device)
        negative = torch.randint(2, (n, self.num_ops), device=device) == 1
        return Plan(ops, torch.full_like(ops, self.magnitude), negative)


class TrivialAugmentWide(PolicyAugmentation):
    """TrivialAugment (Müller & Hutter 2021, arXiv:2103.10158), the "wide" variant, per image.

    Each image draws one operation uniformly from the same 14 as RandAugment and a magnitude bin
    uniformly from ``num_magnitude_bins``, with a random sign, from the wide ranges (shear 0.99,
    translation 32 px, rotation 135 degrees, factors 1 +- 0.99, posterize 8..2 bits), as
    ``torchvision.transforms.TrivialAugmentWide``.

    :param num_magnitude_bins: bins spanning each op's range (default 31).
    :param fill: pixel value(s) for the area a geometric op moves in; ``None``: 0 (black).
    :param interpolation: ``"nearest"`` (default, as torchvision) or ``"bilinear"``.
    """

    name = "trivialaugment"
    space: ClassVar[str] = "wide"

    def __init__(
        self,
        num_magnitude_bins: int = 31,
        fill: float | Sequence[float] | None = None,
        interpolation: str = "nearest",
    ) -> None:
        bins = _check_int("trivialaugment", "num_magnitude_bins", num_magnitude_bins, 2)
        super().__init__(bins, fill, interpolation)

    def params(self) -> dict[str, Any]:
        return {"num_magnitude_bins": self.num_bins, **self._common_params()}

    def sample(self, n: int, device: torch.device) -> Plan:
        ops = torch.randint(len(RANDOM_OPS), (n, 1), device=device)
        bins = torch.randint(self.num_bins, (n, 1), device=device)
        negative = torch.randint(2, (n, 1), device=device) == 1
        return Plan(ops, bins, negative)

"""Tests of the builtin batch augmentations, ``compose`` and ``soft_targets``.

Every augmentation registered through ``cifarbudget_register_augmentations`` is checked through
the registry (parametrized over all names); the rest checks each one's maths with real numbers.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import cifarbudget
from cifarbudget.augment.batch import (
    MATMUL_MIN_TAPS,
    Blur,
    CropFlip,
    CutMix,
    Cutout,
    Mixup,
    RandomErasing,
    VerticalFlip,
    box_mask,
    gather_pixels,
)
from cifarbudget.augment.pipeline import BatchContext, Compose, compose, soft_targets, stage_of
from cifarbudget.builtin.augmentations import AUGMENTATIONS
from cifarbudget.errors import CifarBudgetError, UnknownNameError

AUG_NAMES = cifarbudget.get_registry("augmentations").names()
DETERMINISTIC = {"progressive-resize"}  # no randomness: the same batch under any seed


def batch(
    n: int = 16, num_classes: int = 10, seed: int = 0, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised-looking images and one-hot targets."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=gen)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    return images, soft_targets(labels, num_classes)


def identifiable_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image ``i`` is the constant ``i`` and has label ``i``: partners can be read off pixels."""
    images = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, 32, 32).clone()
    return images, soft_targets(torch.arange(n), n)


def is_one_box(mask: torch.Tensor) -> bool:
    """Whether a boolean ``(H, W)`` mask is exactly one filled rectangle (or empty)."""
    if not mask.any():
        return True
    rows = mask.any(dim=1).nonzero()[:, 0]
    cols = mask.any(dim=0).nonzero()[:, 0]
    box = torch.zeros_like(mask)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    return bool(torch.equal(box, mask))


# --- the registry ---------------------------------------------------------------------------------
def test_every_builtin_is_registered_through_the_hook() -> None:
    """``cifarbudget_register_augmentations`` adds every builtin, with a description naming its source."""
    registry = cifarbudget.get_registry("augmentations")
    assert set(AUGMENTATIONS) <= set(registry.names())
    assert {"crop-flip", "cutmix", "mixup", "blur", "erasing", "cutout"} <= set(registry.names())
    for name in AUGMENTATIONS:
        entry = registry.get(name)
        assert entry.plugin == "cifarbudget.builtin.augmentations"
        assert len(entry.description) > 20


def contract_batch(aug: object, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch at the augmentation's stage: raw uint8 pixels or normalised floats."""
    images, targets = batch(n)
    if stage_of(aug) == "uint8":
        images = (images * 40 + 128).clamp(0, 255).to(torch.uint8)
    return images, targets


def apply(
    aug: object, images: torch.Tensor, targets: torch.Tensor, epoch: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Call ``aug`` as the pipeline does (with a BatchContext when it asks for one)."""
    if getattr(aug, "wants_context", False):
        return aug(images, targets, context=BatchContext(epoch, torch.arange(len(images))))  # type: ignore[operator]
    return aug(images, targets)  # type: ignore[operator]


@pytest.mark.parametrize("name", AUG_NAMES)
def test_registered_augmentation_honours_the_contract(name: str) -> None:
    registry = cifarbudget.get_registry("augmentations")
    torch.manual_seed(0)
    aug = registry.create(name)  # defaults: no arguments
    images, targets = contract_batch(aug, 64)
    before_images, before_targets = images.clone(), targets.clone()
    torch.manual_seed(1)
    out_images, out_targets = apply(aug, images, targets)
    # an augmentation that resizes says to what (input_size: progressive-resize); the rest keep the shape
    resize = getattr(aug, "input_size", None)
    side = (resize(0) if callable(resize) else None) or images.shape[-1]
    assert out_images.shape == (*images.shape[:2], side, side) and out_images.dtype == images.dtype
    assert out_targets.shape == targets.shape and out_targets.dtype == targets.dtype
    assert torch.allclose(out_targets.sum(dim=1), torch.ones(64), atol=1e-6)
    assert (out_targets >= 0).all()
    assert torch.equal(images, before_images) and torch.equal(targets, before_targets)  # not in place
    # reproducible under a seed, different under another seed (an aug that draws its randomness
    # when it is built, as the alternating flip does, differs when built under another seed)
    torch.manual_seed(1)
    again_images, again_targets = apply(aug, images, targets)
    assert torch.equal(again_images, out_images) and torch.equal(again_targets, out_targets)
    torch.manual_seed(2)
    other = registry.create(name) if getattr(aug, "wants_context", False) else aug
    if name not in DETERMINISTIC:
        assert not torch.equal(apply(other, images, targets)[0], out_images)
    else:
        assert torch.equal(apply(other, images, targets)[0], out_images)
    # params() is JSON-ready and the repr shows it
    params = aug.params()
    assert json.loads(json.dumps(params)) == params
    assert type(aug).__name__ in repr(aug)
    for key in params:
        assert key in repr(aug)


IN_PLACE = {"vflip", "cutmix", "mixup", "blur", "erasing", "cutout", "flip-alternating"}


def test_the_normalised_stage_builtins_can_work_in_place() -> None:
    """Every builtin that works on the normalised batch has ``apply_`` (crop-flip makes a new batch anyway)."""
    registry = cifarbudget.get_registry("augmentations")
    have = {n for n in AUGMENTATIONS if callable(getattr(registry.create(n), "apply_", None))}
    assert have == IN_PLACE


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("vflip", {"p": 0.5}),
        ("cutmix", {"p": 0.7}),
        ("cutmix", {"p": 1.0, "mode": "batch"}),
        ("mixup", {"p": 0.6}),
        ("blur", {"p": 0.4}),
        ("blur", {"p": 1.0, "sigma": (0.5, 1.5), "kernel_size": None}),
        ("erasing", {"mode": "pixel"}),
        ("erasing", {"mode": "rand"}),
        ("erasing", {"mode": "const", "p": 1.0}),
        ("cutout", {}),
        ("flip-alternating", {"seed": 3}),
    ],
)
def test_apply_in_place_gives_exactly_what_the_call_gives(
    name: str, params: dict, channels_last: bool
) -> None:
    """``apply_`` overwrites its input with the same values (same draws) that ``aug(...)`` returns."""
    aug = cifarbudget.get_registry("augmentations").create(name, **params)
    images, targets = batch(32)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    context = {"context": BatchContext(1, torch.arange(32))} if aug.wants_context else {}
    torch.manual_seed(5)
    expected, expected_targets = aug(images, targets, **context)
    next_draws = torch.rand(4)
    work = images.clone(memory_format=torch.preserve_format)
    torch.manual_seed(5)
    out, out_targets = aug.apply_(work, targets, **context)
    assert torch.equal(out, expected) and torch.equal(out_targets, expected_targets)
    assert torch.equal(torch.rand(4), next_draws)  # the same random draws
    assert not torch.equal(expected, images)  # something changed, so the comparison means something
    whole_batch_blur = name == "blur" and params["p"] == 1.0  # a new batch: nothing to copy back
    assert (out.data_ptr() == work.data_ptr()) != whole_batch_blur  # written into the batch it was given


@pytest.mark.parametrize("name", AUG_NAMES)
def test_registered_augmentation_keeps_float64(name: str) -> None:
    aug = cifarbudget.get_registry("augmentations").create(name)
    images, targets = contract_batch(aug, 8)
    if stage_of(aug) == "normalized":
        images = images.double()
    out_images, out_targets = apply(aug, images, targets.double())
    assert out_images.dtype == images.dtype and out_targets.dtype == torch.float64


# --- soft targets ----------------------------------------------------------------------------------
def test_soft_targets_one_hot_and_label_smoothing() -> None:
    labels = torch.tensor([0, 2, 1])
    assert torch.equal(soft_targets(labels, 3), torch.eye(3)[[0, 2, 1]])
    smooth = soft_targets(labels, 4, smoothing=0.1)
    assert smooth.dtype == torch.float32
    assert torch.allclose(smooth[0], torch.tensor([0.925, 0.025, 0.025, 0.025]))
    assert torch.allclose(smooth.sum(dim=1), torch.ones(3))
    # the same convention as CrossEntropyLoss(label_smoothing=...)
    logits = torch.randn(3, 4)
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(F.cross_entropy(logits, smooth), expected)


def test_soft_targets_rejects_bad_input() -> None:
    with pytest.raises(CifarBudgetError, match="smoothing"):
        soft_targets(torch.tensor([0]), 10, smoothing=1.0)
    with pytest.raises(CifarBudgetError, match="shape"):
        soft_targets(torch.zeros(2, 2, dtype=torch.long), 10)


# --- crop-flip -------------------------------------------------------------------------------------
def find_crop(out: torch.Tensor, padded: torch.Tensor, pad: int) -> list[tuple[int, int, bool]]:
    """Every (dy, dx, flipped) whose manual crop of ``padded`` equals ``out`` exactly."""
    h, w = out.shape[-2:]
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flipped in (False, True):
                if torch.equal(crop.flip(-1) if flipped else crop, out):
                    found.append((dy, dx, flipped))
    return found


@pytest.mark.parametrize(("mode", "torch_mode"), [("reflect", "reflect"), ("zeros", "constant")])
def test_crop_flip_is_a_per_image_translation_and_flip(mode: str, torch_mode: str) -> None:
    images, targets = batch(48)
    torch.manual_seed(0)
    out, out_targets = CropFlip(padding=4, padding_mode=mode)(images, targets)
    assert out.shape == (48, 3, 32, 32)
    assert torch.equal(out_targets, targets)
    padded = F.pad(images, (4, 4, 4, 4), mode=torch_mode)
    draws = []
    for i in range(48):
        found = find_crop(out[i], padded[i], 4)
        assert len(found) == 1, f"image {i}: not exactly one manual crop matches: {found}"
        draws.append(found[0])
    offsets = {(dy, dx) for dy, dx, _ in draws}
    flips = [flipped for _, _, flipped in draws]
    assert len(offsets) >= 10  # 81 possible offsets, drawn per image
    assert 0 < sum(flips) < 48  # some images flipped, some not, in the same batch
    if mode == "zeros":  # a crop at offset 0 starts with 4 padded zero rows
        corner = [i for i, (dy, _, _) in enumerate(draws) if dy == 0]
        for i in corner:
            assert torch.equal(out[i, :, :4], torch.zeros(3, 4, 32))


def test_crop_flip_offsets_and_flips_are_uniform() -> None:
    # Each pixel holds its 1-based column: an interior pixel of the output gives the image's offset.
    n = 4000
    cols = torch.arange(1, 33, dtype=torch.float32)
    images = cols.expand(n, 3, 32, 32).clone()
    torch.manual_seed(0)
    out, _ = CropFlip(padding=4, padding_mode="zeros")(
        images, soft_targets(torch.zeros(n, dtype=torch.long), 2)
    )
    flipped = out[:, 0, 8, 8] > out[:, 0, 8, 23]  # pixels never in the padding
    assert abs(flipped.float().mean().item() - 0.5) < 0.04
    # unflipped: column j of the output holds column j + dx - 4 of the input (1-based value)
    dx = (out[~flipped, 0, 8, 8] - 5).long()  # value (8 + dx - 4) + 1
    counts = torch.bincount(dx, minlength=9)
    assert counts.numel() == 9 and (counts > 0.7 * len(dx) / 9).all()


def test_crop_flip_without_flip_or_padding() -> None:
    images, targets = batch(8)
    torch.manual_seed(0)
    out, _ = CropFlip(padding=0, flip=False)(images, targets)
    assert torch.equal(out, images)
    torch.manual_seed(0)
    out, _ = CropFlip(padding=0, flip=True)(images, targets)
    for i in range(8):
        assert torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(-1))


# --- CutMix ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_cutmix_partner_target_mass_equals_pasted_area(seed: int) -> None:
    n = 64
    images, targets = identifiable_batch(n)
    torch.manual_seed(seed)
    out, mixed = CutMix(p=1.0)(images, targets)
    areas = []
    for i in range(n):
        pasted = out[i, 0] != i
        assert torch.equal(out[i, 0], out[i, 1]) and torch.equal(out[i, 0], out[i, 2])
        assert is_one_box(pasted)
        area = pasted.sum().item() / 1024
        if area == 0:  # partner is itself, or an empty box: nothing changes
            assert torch.equal(mixed[i], targets[i])
            continue
        partners = out[i, 0][pasted].unique()
        assert partners.numel() == 1  # the whole box comes from one partner
        j = int(partners.item())
        assert mixed[i, j].item() == pytest.approx(area, abs=1e-7)  # exact pasted-area fraction
        assert mixed[i, i].item() == pytest.approx(1 - area, abs=1e-7)
        assert mixed[i].count_nonzero().item() == 2
        areas.append(area)
    assert len(areas) >= n - 8
    assert len(set(areas)) > 10  # a box size per image
    assert 0.2 < sum(areas) / len(areas) < 0.5  # E[1 - lam] = 0.5 before truncation and clipping


def test_cutmix_probability_is_per_image() -> None:
    n = 400
    images, targets = identifiable_batch(n)
    torch.manual_seed(0)
    out, _ = CutMix(p=0.5)(images, targets)
    changed = (out[:, 0] != torch.arange(n, dtype=torch.float32)[:, None, None]).flatten(1).any(dim=1)
    assert 0.4 < changed.float().mean().item() < 0.6
    torch.manual_seed(0)
    out, mixed = CutMix(p=0.0)(images, targets)
    assert torch.equal(out, images) and torch.equal(mixed, targets)


def test_cutmix_mixes_soft_targets() -> None:
    images, _ = identifiable_batch(32)
    targets = soft_targets(torch.arange(32) % 10, 10, smoothing=0.1)
    torch.manual_seed(0)
    _, mixed = CutMix(p=1.0)(images, targets)
    assert torch.allclose(mixed.sum(dim=1), torch.ones(32), atol=1e-6)
    assert (mixed >= 0.01 - 1e-7).all()  # the smoothing floor survives mixing


# --- mixup ----------------------------------------------------------------------------------------
def test_mixup_targets_and_images_are_the_same_convex_combination() -> None:
    n = 64
    images, _ = batch(n)
    targets = soft_targets(torch.arange(n), n)
    torch.manual_seed(0)
    out, mixed = Mixup(alpha=1.0)(images, targets)
    lams = []
    for i in range(n):
        support = mixed[i].nonzero()[:, 0].tolist()
        assert i in support and len(support) <= 2
        assert mixed[i].sum().item() == pytest.approx(1.0, abs=1e-6)
        lam = mixed[i, i].item()
        assert 0.0 <= lam <= 1.0
        j = next((k for k in support if k != i), i)
        expected = lam * images[i] + (1 - lam) * images[j]
        assert torch.allclose(out[i], expected, atol=1e-5)
        lams.append(lam)
    assert len(set(lams)) > n // 2  # one lambda per image
    assert 0.35 < sum(lams) / n < 0.65  # Beta(1, 1): mean 1/2


def test_mixup_alpha_controls_the_mixing_strength() -> None:
    n = 2000
    images, _ = batch(n, seed=3)
    targets = soft_targets(torch.arange(n), n)
    torch.manual_seed(0)
    _, mixed = Mixup(alpha=0.2)(images, targets)
    lam = mixed.diagonal()
    # Beta(0.2, 0.2) puts most mass near 0 and 1
    assert ((lam < 0.1) | (lam > 0.9)).float().mean().item() > 0.6
    torch.manual_seed(0)
    out, same = Mixup(p=0.0)(images, targets)
    assert torch.equal(same, targets) and torch.allclose(out, images)


# --- blur -----------------------------------------------------------------------------------------
def high_freq_energy(images: torch.Tensor) -> torch.Tensor:
    """Per-image energy of horizontal and vertical neighbour differences."""
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return dx.pow(2).flatten(1).sum(1) + dy.pow(2).flatten(1).sum(1)


def test_blur_keeps_channel_means_and_removes_high_frequencies() -> None:
    images, targets = batch(32)
    torch.manual_seed(0)
    out, out_targets = Blur(sigma=(1.0, 2.0), p=1.0, kernel_size=None)(images, targets)
    assert torch.equal(out_targets, targets)
    mean_before, mean_after = images.mean(dim=(2, 3)), out.mean(dim=(2, 3))
    assert (mean_after - mean_before).abs().max().item() < 0.02
    ratio = high_freq_energy(out) / high_freq_energy(images)
    assert (ratio < 0.25).all()
    # a constant image is a fixed point
    flat = torch.full((4, 3, 32, 32), 0.7)
    assert torch.allclose(Blur(p=1.0)(flat, targets[:4])[0], flat, atol=1e-6)


def test_blur_sigma_is_per_image() -> None:
    images, targets = batch(32)
    torch.manual_seed(0)
    out, _ = Blur(sigma=(0.3, 3.0), p=1.0, kernel_size=None)(images, targets)
    ratio = high_freq_energy(out) / high_freq_energy(images)
    assert ratio.max() / ratio.min() > 3  # strong and light blurs in the same batch


@pytest.mark.parametrize(("sigma", "kernel_size"), [(0.8, 3), (1.5, 5), (2.0, 9)])
def test_blur_matches_torchvision_gaussian_blur(sigma: float, kernel_size: int) -> None:
    from torchvision.transforms.v2 import functional as TF

    images, targets = batch(4)
    out, _ = Blur(sigma=(sigma, sigma), p=1.0, kernel_size=kernel_size)(images, targets)
    expected = TF.gaussian_blur(images, kernel_size=[kernel_size, kernel_size], sigma=[sigma, sigma])
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(("size", "taps"), [(32, 11), (32, 3), (5, 9), (2, 3)])
def test_blur_matrix_is_the_reflect_padded_convolution(size: int, taps: int) -> None:
    """Each row of the banded matrix is the kernel, with the taps past an edge folded onto the
    pixels they reflect (several land on one pixel when the kernel is wide for the image)."""
    from cifarbudget.augment.batch import blur_matrix

    torch.manual_seed(3)
    kernel = torch.rand(6, taps, dtype=torch.float64)
    kernel = kernel + kernel.flip(1)  # symmetric, as a Gaussian
    signal = torch.randn(6, size, dtype=torch.float64)
    padded = F.pad(signal[:, None, :], (taps // 2, taps // 2), mode="reflect")[:, 0]
    expected = (padded.unfold(1, taps, 1) * kernel[:, None, :]).sum(-1)
    got = (blur_matrix(kernel, size) @ signal[:, :, None])[..., 0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(blur_matrix(kernel, size).sum(-1), kernel.sum(1, keepdim=True).expand(6, size))


@pytest.mark.parametrize("radius", [1, 2, 3, 5])  # 3 and 5 taps tap by tap, 7 and 11 by matrix products
@pytest.mark.parametrize("channels_last", [True, False])
def test_separable_blur_keeps_the_layout_and_agrees_across_layouts(channels_last: bool, radius: int) -> None:
    from cifarbudget.augment.batch import gaussian_kernels, separable_blur

    images, _ = batch(5)
    x = images.contiguous(memory_format=torch.channels_last) if channels_last else images.contiguous()
    kernel = gaussian_kernels(torch.tensor([0.3, 0.8, 1.0, 1.5, 2.0]), radius, torch.float32)
    out = separable_blur(x, kernel)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(out, separable_blur(images.contiguous(), kernel), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "shape", "channels_last"),
    [
        (torch.uint8, (6, 3, 4, 4), False),  # 48 bytes an image: moved as int32 words
        (torch.uint8, (6, 3, 4, 4), True),  # a channels_last batch is not contiguous: element by element
        (torch.uint8, (6, 3, 3, 3), False),  # 27 bytes: not a whole number of words
        (torch.float32, (6, 3, 4, 4), False),
    ],
)
def test_copy_images_is_index_copy(dtype: torch.dtype, shape: tuple[int, ...], channels_last: bool) -> None:
    from cifarbudget.augment.batch import copy_images_

    torch.manual_seed(5)
    out = (torch.rand(shape) * 255).to(dtype)
    out = out.contiguous(memory_format=torch.channels_last) if channels_last else out
    source = (torch.rand(3, *shape[1:]) * 255).to(dtype)
    index = torch.tensor([4, 0, 2])
    expected = out.clone().index_copy_(0, index, source)
    assert copy_images_(out, index, source) is out
    assert torch.equal(out, expected)


def test_blur_probability_leaves_other_images_bit_identical() -> None:
    n = 400
    images, targets = batch(n)
    torch.manual_seed(0)
    out, _ = Blur(sigma=(1.0, 2.0), p=0.5)(images, targets)
    same = (out == images).flatten(1).all(dim=1)
    assert 0.4 < same.float().mean().item() < 0.6
    assert ((out != images).flatten(1).float().mean(dim=1)[~same] > 0.9).all()  # blurred: all pixels


# --- random erasing -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["pixel", "rand", "const"])
def test_erasing_changes_exactly_one_box_per_image(mode: str) -> None:
    n = 128
    images, targets = batch(n)
    torch.manual_seed(0)
    out, out_targets = RandomErasing(p=1.0, mode=mode)(images, targets)
    assert torch.equal(out_targets, targets)
    changed = out != images  # (N, 3, H, W)
    assert torch.equal(changed[:, 0], changed[:, 1]) and torch.equal(changed[:, 0], changed[:, 2])
    fractions = []
    for i in range(n):
        box = changed[i, 0]
        assert box.any(), f"image {i} was not erased"
        assert is_one_box(box)
        assert torch.equal(out[i][:, ~box], images[i][:, ~box])  # outside the box: bit-identical
        rows, cols = box.any(dim=1).sum().item(), box.any(dim=0).sum().item()
        assert rows < 32 and cols < 32
        assert 0.25 <= rows / cols <= 4.0
        fractions.append(box.sum().item() / 1024)
        inside = out[i][:, box]
        if mode == "const":
            assert torch.equal(inside, torch.zeros_like(inside))
        elif mode == "rand":
            assert torch.equal(inside, inside[:, :1].expand_as(inside))  # one colour per box
    assert min(fractions) >= 0.015 and max(fractions) <= 0.36
    assert len(set(fractions)) > n // 4


def test_erasing_probability_and_fill_statistics() -> None:
    n = 400
    images, targets = batch(n)
    torch.manual_seed(0)
    out, _ = RandomErasing()(images, targets)  # p = 0.5, per-pixel normal fill
    erased = (out != images).flatten(1).any(dim=1)
    assert 0.4 < erased.float().mean().item() < 0.6
    fill = out[out != images]
    assert abs(fill.mean().item()) < 0.05 and abs(fill.std().item() - 1.0) < 0.05


# --- Cutout ---------------------------------------------------------------------------------------
def test_cutout_zeroes_one_clipped_16px_square() -> None:
    n = 256
    images, targets = batch(n)
    torch.manual_seed(0)
    out, _ = Cutout()(images, targets)
    zeroed = out[:, 0] == 0
    sizes = []
    for i in range(n):
        assert is_one_box(zeroed[i])
        assert torch.equal(out[i][:, ~zeroed[i]], images[i][:, ~zeroed[i]])
        rows, cols = zeroed[i].any(dim=1).sum().item(), zeroed[i].any(dim=0).sum().item()
        assert 8 <= rows <= 16 and 8 <= cols <= 16  # the centre is in the image: at least a quarter
        sizes.append((rows, cols))
    assert (16, 16) in sizes and any(s != (16, 16) for s in sizes)  # unclipped and clipped squares
    torch.manual_seed(0)
    assert torch.equal(Cutout(p=0.0)(images, targets)[0], images)


# --- compose --------------------------------------------------------------------------------------
def test_compose_chains_in_order_and_reports_each_params() -> None:
    images, targets = batch(32)
    augs = [CropFlip(), CutMix(p=1.0), Blur(), RandomErasing()]
    torch.manual_seed(5)
    expected_images, expected_targets = images, targets
    for aug in augs:
        expected_images, expected_targets = aug(expected_images, expected_targets)
    torch.manual_seed(5)
    pipeline = compose(["crop-flip", ("cutmix", {"p": 1.0}), "blur", augs[3]])
    out_images, out_targets = pipeline(images, targets)
    assert torch.equal(out_images, expected_images) and torch.equal(out_targets, expected_targets)
    params = pipeline.params()
    assert [a["name"] for a in params["augs"]] == ["crop-flip", "cutmix", "blur", "erasing"]
    assert params["augs"][1]["params"] == {"alpha": 1.0, "p": 1.0}
    assert json.loads(json.dumps(params)) == params
    assert len(pipeline) == 4 and "CutMix(alpha=1.0, p=1.0)" in repr(pipeline)


def test_compose_of_nothing_is_the_identity_and_unknown_names_fail() -> None:
    images, targets = batch(4)
    out_images, out_targets = Compose([])(images, targets)
    assert out_images is images and out_targets is targets
    with pytest.raises(UnknownNameError, match="cutmx"):
        compose(["cutmx"])


def test_compose_accepts_third_party_callables_without_params() -> None:
    def halve(images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images / 2, targets

    images, targets = batch(4)
    pipeline = compose([halve])
    assert torch.equal(pipeline(images, targets)[0], images / 2)
    assert pipeline.params() == {"augs": [{"name": "halve", "params": {}}]}


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (CropFlip, {"padding_mode": "wrap"}, "padding_mode"),
        (CutMix, {"p": 1.5}, "probability"),
        (Mixup, {"alpha": 0.0}, "alpha"),
        (Blur, {"kernel_size": 4}, "odd"),
        (Blur, {"sigma": (2.0, 1.0)}, "sigma"),
        (RandomErasing, {"area": (0.5, 0.1)}, "area"),
        (RandomErasing, {"mode": "mean"}, "mode"),
        (Cutout, {"size": 0}, "size"),
    ],
)
def test_bad_params_are_user_errors(factory: type, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CifarBudgetError, match=message):
        factory(**kwargs)


# --- stages: crop-flip and vflip on the uint8 batch -----------------------------------------------
MEAN = torch.tensor([125.3, 122.9, 113.8]).view(1, 3, 1, 1)
STD = torch.tensor([62.9, 62.0, 66.7]).view(1, 3, 1, 1)


def normalize(images: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """The engine's normalisation (``DeviceSplit.normalize``): per-channel affine, channels_last."""
    x = (images.float() - MEAN) / STD
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def uint8_batch(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return images, soft_targets(torch.randint(0, 10, (n,), generator=gen), 10)


def test_stages_of_crop_flip_and_vflip() -> None:
    """Pixel-moving modes run at either stage; black padding needs raw pixels, mean-colour padding floats."""
    assert stage_of(CropFlip()) == "any" and stage_of(CropFlip(padding_mode="replicate")) == "any"
    assert stage_of(CropFlip(padding_mode="black")) == "uint8"
    assert stage_of(CropFlip(padding_mode="zeros")) == "normalized"
    assert stage_of(VerticalFlip()) == "any"
    images, targets = uint8_batch(4)
    with pytest.raises(CifarBudgetError, match="uint8 batch"):
        CropFlip(padding_mode="black")(normalize(images), targets)
    with pytest.raises(CifarBudgetError, match="normalised batch"):
        CropFlip(padding_mode="zeros")(images, targets)
    with pytest.raises(CifarBudgetError, match="smaller than the image"):
        CropFlip(padding=32)(images, targets)


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_crop_flip_on_uint8_gives_exactly_the_float_path(mode: str, channels_last: bool) -> None:
    """Crop-flip then normalise == normalise then crop-flip, bit for bit: existing runs do not change."""
    images, targets = uint8_batch(96)
    torch.manual_seed(3)
    via_uint8 = normalize(CropFlip(padding_mode=mode)(images, targets)[0], channels_last)
    torch.manual_seed(3)
    via_float = reference_crop_flip(normalize(images, channels_last), 4, mode, flip=True)
    assert torch.equal(via_uint8, via_float)
    torch.manual_seed(3)  # the float path of the new code is the same too
    assert torch.equal(CropFlip(padding_mode=mode)(normalize(images, channels_last), targets)[0], via_float)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32])
def test_crop_flip_of_a_batch_in_which_no_image_flips(dtype: torch.dtype) -> None:
    """A batch where no image draws the flip (half of all one-image batches) copies no image: the
    two-byte and one-byte paths once raised there (an epoch smaller than a batch is one batch)."""
    images = uint8_batch(1)[0].to(dtype)
    flipped = []
    for seed in range(8):  # each of the two outcomes at least once with these seeds
        torch.manual_seed(seed)
        out = CropFlip(padding=0)(images, torch.zeros(1, 10))[0]
        assert torch.equal(out, images) or torch.equal(out, images.flip(3))
        flipped.append(torch.equal(out, images.flip(3)))
    assert set(flipped) == {True, False}


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("mode", ["black", "reflect", "replicate", "zeros"])
@pytest.mark.parametrize(("padding", "flip"), [(4, True), (2, False), (0, True)])
def test_crop_flip_copies_rows_exactly_as_the_pixel_gather(
    mode: str, padding: int, flip: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row gather == the per-pixel gather (``gather_pixels``), draw for draw, in both layouts
    (channels_last: whole pixel rows; contiguous: rows of a channel plane, e.g. the engine's uint8
    batch), on the CPU (only flipped crops mirrored) and on the accelerator path (the whole batch)."""
    import cifarbudget.augment.batch as batch_module

    images, targets = uint8_batch(96, seed=5)
    if mode == "zeros":
        images = normalize(images, channels_last=False)
    n, p = images.shape[0], padding
    torch.manual_seed(4)  # the draws CropFlip makes: offsets, then flips
    dy, dx = torch.randint(0, 2 * p + 1, (n,)), torch.randint(0, 2 * p + 1, (n,))
    flips = torch.rand(n) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    rows = dy[:, None] + torch.arange(32)
    cols = dx[:, None] + torch.arange(32)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    pad = {"value": 0} if mode in ("black", "zeros") else {"mode": mode}
    expected = gather_pixels(F.pad(images, (p, p, p, p), **pad) if p else images, rows, cols)
    aug = CropFlip(padding=padding, padding_mode=mode, flip=flip)
    for layout in (torch.contiguous_format, torch.channels_last):
        batch_in = images.contiguous(memory_format=layout)
        for accelerator in (False, True):
            if accelerator:
                monkeypatch.setattr(batch_module, "syncs_freely", lambda device: False)
            torch.manual_seed(4)
            out, _ = aug(batch_in, targets)
            assert torch.equal(out, expected), (layout, accelerator)
            assert out.is_contiguous(memory_format=layout)
            monkeypatch.undo()


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize(
    ("mode", "tv_mode"), [("black", "constant"), ("reflect", "reflect"), ("replicate", "edge")]
)
def test_crop_flip_matches_torchvision_random_crop_on_uint8(mode: str, tv_mode: str) -> None:
    """``RandomCrop(32, padding=4, padding_mode=...)`` (fill 0) + ``RandomHorizontalFlip`` on uint8 images."""
    from torchvision.transforms.v2 import functional as TF

    n = 64
    images, targets = uint8_batch(n)
    torch.manual_seed(11)
    out, _ = CropFlip(padding=4, padding_mode=mode)(images, targets)
    torch.manual_seed(11)  # the same draws, in the same order: offsets, then flips
    dy, dx = torch.randint(0, 9, (n,)), torch.randint(0, 9, (n,))
    flip = torch.rand(n) < 0.5
    for i in range(n):
        padded = TF.pad(images[i], [4], fill=0, padding_mode=tv_mode)
        crop = TF.crop(padded, int(dy[i]), int(dx[i]), 32, 32)
        expected = TF.horizontal_flip(crop) if flip[i] else crop
        assert torch.equal(out[i], expected), f"image {i}"
    if mode == "black":  # black pixels, not the mean colour: 0 before normalisation
        assert (out[dy == 0][:, :, :4] == 0).all()


def test_compose_runs_pixel_moving_augmentations_first_on_uint8_without_reordering() -> None:
    """Compose moves normalisation after the leading "any"-stage augmentations, nothing else."""
    seen: list[tuple[str, torch.dtype]] = []

    class Spy(VerticalFlip):
        def __init__(self, label: str, stage: str) -> None:
            super().__init__(p=0.5)
            self.label, self.stage = label, stage

        def transform(
            self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
        ) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append((self.label, images.dtype))
            return super().transform(images, targets, inplace)

    images, targets = uint8_batch(32)
    pipeline = Compose(
        [Spy("a", "any"), Spy("b", "any"), Spy("n", "normalized"), Spy("c", "any")], normalize=normalize
    )
    torch.manual_seed(0)
    out, _ = pipeline(images, targets)
    assert seen == [("a", torch.uint8), ("b", torch.uint8), ("n", torch.float32), ("c", torch.float32)]
    # the result is exactly that of normalising first (the order of the draws is unchanged)
    torch.manual_seed(0)
    assert torch.equal(out, Compose(pipeline.augs)(normalize(images), targets)[0])


def test_compose_works_in_place_only_on_batches_it_owns() -> None:
    """``apply_`` runs on the batch normalisation made and what ``apply_`` made of it; never on the
    caller's batch, nor after a third-party augmentation returned a tensor of unknown ownership."""
    calls: list[tuple[str, bool]] = []

    class Spy(Cutout):
        def __init__(self, label: str) -> None:
            super().__init__(size=8)
            self.label = label

        def transform(
            self, images: torch.Tensor, targets: torch.Tensor, inplace: bool
        ) -> tuple[torch.Tensor, torch.Tensor]:
            calls.append((self.label, inplace))
            return super().transform(images, targets, inplace)

    kept = torch.randn(32, 3, 32, 32)

    def returns_its_input(images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, targets

    def returns_a_tensor_of_its_own(
        images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return kept, targets  # e.g. a cached batch: the pipeline must not overwrite it

    images, targets = uint8_batch(32)
    augs = [Spy("a"), returns_its_input, Spy("b"), returns_a_tensor_of_its_own, Spy("c")]
    before = kept.clone()
    Compose(augs, normalize=normalize)(images, targets)
    assert calls == [("a", True), ("b", True), ("c", False)]
    assert torch.equal(kept, before)
    # called on a float batch, nothing is done in place and the batch is left alone
    calls.clear()
    floats = normalize(images)
    original = floats.clone()
    torch.manual_seed(0)
    out, _ = Compose(augs[:3], normalize=normalize)(floats, targets)
    assert calls == [("a", False), ("b", False)] and torch.equal(floats, original)
    assert not torch.equal(out, floats)


def test_in_place_pipeline_gives_the_same_batches_as_before() -> None:
    """The notebook's float stage through Compose (in place) equals the chain of calls, value for value,
    also on a contiguous (not channels_last) batch."""
    images, targets = uint8_batch(64)
    augs = [Mixup(p=0.5), Cutout(), VerticalFlip(), Blur(p=0.5), RandomErasing(mode="pixel"), CutMix()]
    for channels_last in (True, False):

        def norm(x: torch.Tensor, cl: bool = channels_last) -> torch.Tensor:
            return normalize(x, channels_last=cl)

        torch.manual_seed(7)
        out, mixed = Compose(augs, normalize=norm)(images, targets)
        torch.manual_seed(7)
        x, t = norm(images), targets
        for aug in augs:
            x, t = aug(x, t)
        assert torch.equal(out, x) and torch.equal(mixed, t)


def test_compose_keeps_uint8_policies_before_crop_flip_as_before() -> None:
    """``[crop-flip, randaugment]`` ran the policy first, then crop-flip after normalising; moving the
    crop to the uint8 batch must keep that order (the same numbers for existing runs), not crop first."""
    from cifarbudget.augment.policies import RandAugment

    images, targets = uint8_batch(32)
    policy = RandAugment()
    torch.manual_seed(0)
    out, _ = Compose([CropFlip(), policy], normalize=normalize)(images, targets)
    torch.manual_seed(0)
    before = CropFlip()(normalize(policy(images, targets)[0]), targets)[0]  # the order until now
    assert torch.equal(out, before)


def test_paper_pipeline_through_compose_equals_normalising_after_the_crop() -> None:
    """The notebook's pipeline: black-padded crop on uint8, then the normalised stage."""
    images, targets = uint8_batch(64)
    augs = [
        CropFlip(padding_mode="black"),
        Blur(sigma=(0.1, 1.5), p=0.3, kernel_size=None),
        VerticalFlip(p=0.05),
        RandomErasing(p=0.5, area=(0.02, 0.2), mode="const"),
        CutMix(p=0.5, mode="batch"),
    ]
    torch.manual_seed(4)
    out, mixed = Compose(augs, normalize=normalize)(images, targets)
    torch.manual_seed(4)
    x, t = augs[0](images, targets)
    x = normalize(x)
    for aug in augs[1:]:
        x, t = aug(x, t)
    assert torch.equal(out, x) and torch.equal(mixed, t)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)


# --- vertical flip ---------------------------------------------------------------------------------
@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_vflip_mirrors_exactly_the_drawn_images(dtype: torch.dtype) -> None:
    n = 400
    images, targets = uint8_batch(n)
    images = images if dtype == torch.uint8 else normalize(images)
    torch.manual_seed(2)
    out, out_targets = VerticalFlip(p=0.3)(images, targets)
    torch.manual_seed(2)
    drawn = torch.rand(n) < 0.3  # torchvision's RandomVerticalFlip: flip when rand < p
    assert torch.equal(out[drawn], images[drawn].flip(-2))  # TF.vertical_flip
    assert torch.equal(out[~drawn], images[~drawn])
    assert 0.25 < drawn.float().mean().item() < 0.35 and torch.equal(out_targets, targets)
    torch.manual_seed(2)
    assert torch.equal(VerticalFlip(p=0.0)(images, targets)[0], images)
    with pytest.raises(CifarBudgetError, match="probability"):
        VerticalFlip(p=2.0)


# --- CutMix on the whole batch ----------------------------------------------------------------------
def notebook_rand_bbox(h: int, w: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The reference notebook's ``rand_bbox`` (Yun et al.'s CIFAR code): ``cut // 2`` on both sides."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * cut), int(w * cut)
    top, bottom = min(max(cy - cut_h // 2, 0), h), min(max(cy + cut_h // 2, 0), h)
    left, right = min(max(cx - cut_w // 2, 0), w), min(max(cx + cut_w // 2, 0), w)
    return top, bottom, left, right


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("channels_last", [True, False])
def test_cutmix_batch_mode_is_the_notebooks_cutmix(seed: int, channels_last: bool) -> None:
    """One lambda, one box, one permutation for the batch; the targets mixed by the box's area."""
    n = 32
    images, targets = identifiable_batch(n)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(seed)
    out, mixed = CutMix(p=1.0, mode="batch")(images, targets)
    torch.manual_seed(seed)  # the same draws: lam, apply, partners, centre
    lam, _ = torch.rand(1).item(), torch.rand(1)
    perm = torch.randperm(n)
    cy, cx = int(torch.randint(0, 32, (1,))), int(torch.randint(0, 32, (1,)))
    top, bottom, left, right = notebook_rand_bbox(32, 32, lam, cy, cx)
    expected = images.clone()
    expected[:, :, top:bottom, left:right] = images[perm, :, top:bottom, left:right]
    assert torch.equal(out, expected)
    area = (bottom - top) * (right - left) / 1024  # lam corrected to the box: 1 - area
    assert torch.allclose(mixed, (1 - area) * targets + area * targets[perm], atol=1e-7)


@pytest.mark.usefixtures("single_thread")
def test_cutmix_batch_mode_probability_is_per_batch() -> None:
    images, targets = identifiable_batch(16)
    torch.manual_seed(0)
    mixed_batches = 0
    for _ in range(300):
        out, mixed = CutMix(p=0.5, mode="batch")(images, targets)
        changed = (out != images)[:, 0]  # (N, H, W)
        touched = changed.flatten(1).any(dim=1)
        if touched.any():  # one box for the whole batch (images paired with themselves stay unchanged)
            assert (changed[touched] == changed[touched][0]).all() and is_one_box(changed[touched][0])
            mixed_batches += 1
        else:
            assert torch.equal(mixed, targets)
    assert 0.4 < mixed_batches / 300 < 0.6
    aug = CutMix(alpha=0.4, p=0.5, mode="batch")
    assert aug.params() == {"alpha": 0.4, "p": 0.5, "mode": "batch"} and "mode='batch'" in repr(aug)
    assert CutMix().params() == {"alpha": 1.0, "p": 0.5}  # the per-image default is recorded as before
    with pytest.raises(CifarBudgetError, match="mode"):
        CutMix(mode="pairs")


# --- the rewritten ops give exactly the previous outputs for the same draws ----------------------
def reference_crop_flip(images: torch.Tensor, p: int, mode: str, flip: bool) -> torch.Tensor:
    """The previous crop-flip (pad the normalised batch with ``F.pad``, one gather)."""
    n, c, h, w = images.shape
    torch_mode = {"reflect": "reflect", "zeros": "constant", "replicate": "replicate"}[mode]
    padded = F.pad(images, (p, p, p, p), mode=torch_mode) if p else images
    dy, dx = torch.randint(0, 2 * p + 1, (n,)), torch.randint(0, 2 * p + 1, (n,))
    rows, cols = dy[:, None] + torch.arange(h), dx[:, None] + torch.arange(w)
    if flip:
        cols = torch.where((torch.rand(n) < 0.5)[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * padded.shape[3] + cols[:, None, :]).view(n, 1, h * w)
    return padded.reshape(n, c, -1).gather(2, index.expand(n, c, h * w)).view(n, c, h, w)


def reference_cutmix(
    images: torch.Tensor, targets: torch.Tensor, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous per-image CutMix (a boolean box mask and ``torch.where``)."""
    n, _, h, w = images.shape
    lam, apply, perm = torch.rand(n), torch.rand(n) < p, torch.randperm(n)
    cy, cx = torch.randint(0, h, (n,)), torch.randint(0, w, (n,))
    ratio = torch.sqrt(1.0 - lam)
    cut_h, cut_w = (h * ratio).long() * apply, (w * ratio).long() * apply
    top, bottom = (cy - cut_h // 2).clamp(0, h), (cy + (cut_h + 1) // 2).clamp(0, h)
    left, right = (cx - cut_w // 2).clamp(0, w), (cx + (cut_w + 1) // 2).clamp(0, w)
    mask = box_mask(top, bottom, left, right, h, w)
    area = mask.sum(dim=(1, 2)).to(targets.dtype) / (h * w)
    out = torch.where(mask[:, None], images[perm], images)
    return out, (1.0 - area[:, None]) * targets + area[:, None] * targets[perm]


def reference_blur(images: torch.Tensor, sigma: tuple[float, float], p: float, k: int) -> torch.Tensor:
    """The previous blur (``F.pad`` reflect, both passes over the whole batch, then ``torch.where``)."""
    n, _, h, w = images.shape
    s = sigma[0] + (sigma[1] - sigma[0]) * torch.rand(n)
    apply = torch.rand(n) < p
    r = k // 2
    taps = torch.arange(-r, r + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps[None, :] / s[:, None]) ** 2)
    weights = (kernel / kernel.sum(dim=1, keepdim=True)).to(images.dtype)[:, :, None, None, None]
    padded = F.pad(images, (r, r, r, r), mode="reflect")
    horiz = weights[:, 0] * padded[:, :, :, 0:w]
    for t in range(1, k):
        horiz = horiz.addcmul_(weights[:, t], padded[:, :, :, t : t + w])
    blurred = weights[:, 0] * horiz[:, :, 0:h, :]
    for t in range(1, k):
        blurred = blurred.addcmul_(weights[:, t], horiz[:, :, t : t + h, :])
    return torch.where(apply[:, None, None, None], blurred, images)


def reference_erasing(images: torch.Tensor, p: float, area: tuple[float, float], mode: str) -> torch.Tensor:
    """The previous random erasing (a boolean mask; ``masked_scatter`` of normals on the CPU)."""
    n, c, h, w = images.shape
    target_area = (area[0] + (area[1] - area[0]) * torch.rand(n, 10)) * (h * w)
    lo, hi = math.log(0.3), math.log(3.3)
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, 10))
    box_h = torch.sqrt(target_area * aspect).round().long()
    box_w = torch.sqrt(target_area / aspect).round().long()
    fits = (box_h < h) & (box_w < w) & (box_h > 0) & (box_w > 0)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    box_h, box_w = box_h.gather(1, first)[:, 0], box_w.gather(1, first)[:, 0]
    apply = (torch.rand(n) < p) & fits.any(dim=1)
    top = (torch.rand(n) * (h - box_h + 1)).long().clamp(max=h - 1)
    left = (torch.rand(n) * (w - box_w + 1)).long().clamp(max=w - 1)
    box_h, box_w = box_h * apply, box_w * apply
    mask = box_mask(top, top + box_h, left, left + box_w, h, w)[:, None]
    if mode == "pixel":  # the normals fill the box values in the batch's memory order
        full = mask.expand(n, c, h, w)
        values = torch.randn(int(full.sum()), dtype=images.dtype)
        if images.is_contiguous():
            return images.masked_scatter(full, values)
        nhwc = images.permute(0, 2, 3, 1)  # channels_last: pixel by pixel, channel innermost
        return nhwc.masked_scatter(full.permute(0, 2, 3, 1), values).permute(0, 3, 1, 2)
    fill = (
        torch.randn(n, c, 1, 1, dtype=images.dtype) if mode == "rand" else torch.zeros((), dtype=images.dtype)
    )
    return torch.where(mask, fill, images)


def reference_cutout(images: torch.Tensor, size: int, p: float) -> torch.Tensor:
    """The previous Cutout (``masked_fill`` of a boolean mask)."""
    n, _, h, w = images.shape
    cy, cx = torch.randint(0, h, (n,)), torch.randint(0, w, (n,))
    apply = torch.rand(n) < p
    top, left = (cy - size // 2).clamp(0, h), (cx - size // 2).clamp(0, w)
    bottom, right = (cy - size // 2 + size).clamp(0, h), (cx - size // 2 + size).clamp(0, w)
    mask = box_mask(top, bottom, left, right, h, w) & apply[:, None, None]
    return images.masked_fill(mask[:, None], 0.0)


REWRITTEN = {
    "crop-flip reflect": (CropFlip(), lambda x, t: reference_crop_flip(x, 4, "reflect", True)),
    "crop-flip zeros": (
        CropFlip(padding_mode="zeros"),
        lambda x, t: reference_crop_flip(x, 4, "zeros", True),
    ),
    "crop-flip replicate, no flip": (
        CropFlip(2, "replicate", flip=False),
        lambda x, t: reference_crop_flip(x, 2, "replicate", False),
    ),
    "cutmix": (CutMix(p=0.7), lambda x, t: reference_cutmix(x, t, 0.7)[0]),
    "blur 3 taps": (Blur(), lambda x, t: reference_blur(x, (0.1, 2.0), 0.5, 3)),
    "blur 11 taps p=0.3": (
        Blur(sigma=(0.1, 1.5), p=0.3, kernel_size=None),
        lambda x, t: reference_blur(x, (0.1, 1.5), 0.3, 11),
    ),
    "blur all": (Blur(p=1.0, kernel_size=5), lambda x, t: reference_blur(x, (0.1, 2.0), 1.0, 5)),
    "erasing pixel": (RandomErasing(), lambda x, t: reference_erasing(x, 0.5, (0.02, 0.33), "pixel")),
    "erasing rand": (
        RandomErasing(mode="rand"),
        lambda x, t: reference_erasing(x, 0.5, (0.02, 0.33), "rand"),
    ),
    "erasing const": (
        RandomErasing(area=(0.02, 0.2), mode="const"),
        lambda x, t: reference_erasing(x, 0.5, (0.02, 0.2), "const"),
    ),
    "cutout": (Cutout(p=0.6), lambda x, t: reference_cutout(x, 16, 0.6)),
}


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("layout", ["channels_last", "contiguous", "float64"])
@pytest.mark.parametrize("name", list(REWRITTEN))
def test_rewritten_op_gives_the_previous_output_for_the_same_draws(name: str, layout: str) -> None:
    """Layout-aware masks, lerp instead of where, work on only the changed images: same values, same RNG use.

    Blur with 7 or more taps is the exception to "same values": it sums each pass as a matrix
    product, in another order than the tap by tap reference, so its blurred images agree to
    rounding; the images it leaves alone are still bit-identical.
    """
    aug, reference = REWRITTEN[name]
    images, targets = uint8_batch(128, seed=7)
    x = normalize(images, channels_last=layout != "contiguous")
    x = x.double() if layout == "float64" else x
    torch.manual_seed(21)
    out, out_targets = aug(x, targets)
    after_aug = torch.rand(1)
    torch.manual_seed(21)
    expected = reference(x, targets)
    assert out.dtype == x.dtype
    if isinstance(aug, Blur) and aug.kernel_size >= MATMUL_MIN_TAPS:
        untouched = (expected == x).flatten(1).all(dim=1)
        assert 0 < untouched.sum() < 128 or name == "blur all"
        assert torch.equal(out[untouched], x[untouched])
        tolerance = 1e-12 if layout == "float64" else 2e-6  # normalised pixels are within about +-2.5
        torch.testing.assert_close(out, expected, rtol=0, atol=tolerance)
    else:
        assert torch.equal(out, expected)
    assert torch.equal(torch.rand(1), after_aug)  # the RNG stream advanced by exactly the same draws
    if name == "cutmix":
        torch.manual_seed(21)
        assert torch.equal(out_targets, reference_cutmix(x, targets, 0.7)[1])
    if layout == "channels_last":  # the batch keeps the layout the model wants
        assert out.is_contiguous(memory_format=torch.channels_last)


# --- the paper's blur and erasing, against PIL and torchvision -------------------------------------
@pytest.mark.usefixtures("single_thread")
def test_blur_against_pil_gaussian_blur_on_real_images(real_data_dir: object) -> None:
    """PIL's ``GaussianBlur(radius)`` (three box blurs of variance radius^2) vs our Gaussian kernel.

    The differences the Blur docstring states, measured on real images: small against the blur
    itself, largest at the border (PIL extends edges, we reflect).
    """
    import numpy as np
    from PIL import Image, ImageFilter

    from cifarbudget.data.imagefolder import load_imagefolder

    images = load_imagefolder(real_data_dir, train=False).images[:200]
    x = images.float()
    for sigma in (0.5, 1.0, 1.5):
        pil = torch.stack(
            [
                torch.from_numpy(np.array(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius=sigma))))
                for a in images.permute(0, 2, 3, 1).numpy()
            ]
        ).permute(0, 3, 1, 2)
        ours, _ = Blur(sigma=(sigma, sigma), p=1.0, kernel_size=None)(x, torch.zeros(200, 10))
        diff = (ours - pil.float()).abs()
        effect = (pil.float() - x).abs().mean().item()
        assert diff.mean().item() < 1.2 and diff.mean().item() < 0.3 * effect
        assert diff[:, :, 5:-5, 5:-5].max().item() < 10  # away from the border
        assert diff.max().item() < 60


@pytest.mark.usefixtures("single_thread")
def test_erasing_scale_and_ratio_map_to_area_and_aspect_like_torchvision() -> None:
    """``RandomErasing(p, scale=(0.02, 0.2), ratio=(0.3, 3.3), value=0)`` after Normalize is ``mode="const"``."""
    from torchvision import transforms as T

    n = 4000
    torch.manual_seed(0)
    out, _ = RandomErasing(p=1.0, area=(0.02, 0.2), aspect=(0.3, 3.3), mode="const")(
        torch.ones(n, 1, 32, 32), torch.zeros(n, 10)
    )
    erased = out[:, 0] == 0
    ours_h, ours_w = erased.any(dim=2).sum(dim=1).float(), erased.any(dim=1).sum(dim=1).float()
    assert torch.equal(erased.sum(dim=(1, 2)).float(), ours_h * ours_w)  # one box each
    torch.manual_seed(0)
    boxes = [
        T.RandomErasing.get_params(torch.ones(1, 32, 32), (0.02, 0.2), (0.3, 3.3), [0]) for _ in range(n)
    ]
    tv_h = torch.tensor([b[2] for b in boxes], dtype=torch.float32)
    tv_w = torch.tensor([b[3] for b in boxes], dtype=torch.float32)
    quantiles = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    for ours, theirs in ((ours_h * ours_w, tv_h * tv_w), (ours_h, tv_h), (ours_w, tv_w)):
        assert abs(ours.mean().item() - theirs.mean().item()) < 0.04 * theirs.mean().item()
        gap = (ours.quantile(quantiles) - theirs.quantile(quantiles)).abs()
        assert (gap <= (0.08 * theirs.quantile(quantiles)).clamp(min=1.0)).all(), gap
    # the scale bound, up to rounding each side: (sqrt(a r) + 1/2)(sqrt(a / r) + 1/2) at r = 3.3
    largest = 0.2 * 1024
    bound = (math.sqrt(largest * 3.3) + 0.5) * (math.sqrt(largest / 3.3) + 0.5)
    assert (ours_h * ours_w).max().item() <= bound and (tv_h * tv_w).max().item() <= bound


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize(
    "aug",
    [
        VerticalFlip(p=0.3),
        Blur(),
        Blur(sigma=(0.1, 1.5), p=0.3, kernel_size=None),
        CutMix(p=1.0, mode="batch"),
        CutMix(p=0.5),
        RandomErasing(mode="const"),
        RandomErasing(mode="rand", p=0.7),
        Cutout(p=0.5),
    ],
    ids=repr,
)
def test_accelerator_paths_give_the_cpu_results(aug: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync-free batched code a GPU runs equals the CPU's changed-images-only code, draw for draw."""
    import cifarbudget.augment.batch as batch_module

    images, targets = uint8_batch(64, seed=3)
    x = normalize(images)
    torch.manual_seed(8)
    cpu_images, cpu_targets = aug(x, targets)  # type: ignore[operator]
    monkeypatch.setattr(batch_module, "syncs_freely", lambda device: False)
    torch.manual_seed(8)
    batched_images, batched_targets = aug(x, targets)  # type: ignore[operator]
    assert torch.equal(cpu_images, batched_images) and torch.equal(cpu_targets, batched_targets)


def test_a_uint8_stage_augmentation_that_returns_floats_is_refused() -> None:
    """A plugin's ``stage = "uint8"`` augmentation returning floats trained silently on garbage."""

    class ToFloat:
        name = "to-float"
        stage = "uint8"

        def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return images.float() / 255, targets

    pipe = Compose([ToFloat()], ["to-float"], normalize=lambda x: x.float())
    images, targets = uint8_batch(4)
    with pytest.raises(
        CifarBudgetError, match=r"augmentation 'to-float' runs at stage 'uint8' .* returned torch.float32"
    ):
        pipe(images, targets)

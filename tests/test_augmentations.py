"""Tests of the builtin batch augmentations, ``compose`` and ``soft_targets``.

Every augmentation registered through ``cifarbudget_register_augmentations`` is checked through
the registry (parametrized over all names); the rest checks each one's maths with real numbers.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import cifarbudget
from cifarbudget.augment.batch import Blur, CropFlip, CutMix, Cutout, Mixup, RandomErasing
from cifarbudget.augment.pipeline import BatchContext, Compose, compose, soft_targets, stage_of
from cifarbudget.builtin.augmentations import AUGMENTATIONS
from cifarbudget.errors import CifarBudgetError, UnknownNameError

AUG_NAMES = cifarbudget.get_registry("augmentations").names()


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
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
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
    assert not torch.equal(apply(other, images, targets)[0], out_images)
    # params() is JSON-ready and the repr shows it
    params = aug.params()
    assert json.loads(json.dumps(params)) == params
    assert type(aug).__name__ in repr(aug)
    for key in params:
        assert key in repr(aug)


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

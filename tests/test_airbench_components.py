"""Tests of the airbench-derived components and the budgeted-training schedule.

Alternating flip (``cifarbudget.augment.alternating``), whitening initialisation
(``cifarbudget.nets.whitening`` and ``AirNet(whiten=True).init_from_data``), the TTA policies
multicrop / selective / paper5 and the ``views_computed`` counter (``cifarbudget.tta``), and the
``linear`` schedule (``cifarbudget.schedules``). Each test checks the defining property of a
component with real numbers: exact flip sets, covariances, forward-pass counts, agreement with
torchvision / scipy, exact LR values.
"""

from __future__ import annotations

import io
import itertools
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from torch import nn
from torchvision import transforms

import cifarbudget
from cifarbudget.augment.alternating import AlternatingFlip, hash32
from cifarbudget.augment.batch import CropFlip
from cifarbudget.augment.pipeline import BatchContext, Compose, soft_targets
from cifarbudget.data.core import normalization_stats
from cifarbudget.data.synthetic import make_synthetic
from cifarbudget.errors import CifarBudgetError
from cifarbudget.nets.airnet import AirNet
from cifarbudget.nets.whitening import conv_patches, patch_covariance, whiten_conv_
from cifarbudget.schedules import linear
from cifarbudget.tta import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    FlipShiftTTA,
    FlipTTA,
    MultiCrop18TTA,
    MultiCropTTA,
    NoTTA,
    Paper5TTA,
    SelectiveTTA,
)


# --- alternating flip -----------------------------------------------------------------------------
def flipped_mask(out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Which outputs are the mirror of their input (each must be exactly one of the two)."""
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())  # random images are not symmetric: exactly one holds
    return mirrored


def run_epoch(aug: AlternatingFlip, images: torch.Tensor, epoch: int, batch_size: int = 96) -> torch.Tensor:
    """One epoch in shuffled batches, as the engine feeds them; returns the flipped mask by index."""
    n = images.shape[0]
    targets = soft_targets(torch.zeros(n, dtype=torch.long), 10)
    flipped = torch.zeros(n, dtype=torch.bool)
    for idx in torch.randperm(n).split(batch_size):
        out, out_targets = aug(images[idx], targets[idx], context=BatchContext(epoch, idx))
        assert out_targets is targets[idx] or torch.equal(out_targets, targets[idx])
        flipped[idx] = flipped_mask(out, images[idx])
    return flipped


def test_alternating_flip_mirrors_exactly_the_images_not_mirrored_in_the_previous_epoch() -> None:
    torch.manual_seed(0)
    n = 1000
    images = torch.randn(n, 3, 4, 6)
    aug = AlternatingFlip()
    history = [run_epoch(aug, images, epoch) for epoch in range(6)]
    # epoch 0: a fair coin per image (1000 coins: 3 standard deviations is 0.047)
    assert abs(history[0].float().mean().item() - 0.5) < 0.05
    for before, now in itertools.pairwise(history):
        assert torch.equal(now, ~before)  # mirrored now iff not mirrored in the previous epoch
    # so each image is seen in each orientation exactly once per pair of epochs
    assert torch.equal(torch.stack(history[:2]).sum(0), torch.ones(n, dtype=torch.long))


def test_alternating_flip_depends_only_on_seed_index_and_epoch() -> None:
    images = torch.randn(500, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    aug = AlternatingFlip()
    torch.manual_seed(5)
    rebuilt = AlternatingFlip()  # a resumed run rebuilds the pipeline after seeding: same seed
    assert rebuilt.seed == aug.seed and rebuilt.params() == {"seed": aug.seed}
    first = run_epoch(aug, images, 3)
    torch.manual_seed(123)  # other RNG history and batch order: same flips
    assert torch.equal(run_epoch(AlternatingFlip(seed=aug.seed), images, 3, batch_size=37), first)
    torch.manual_seed(6)
    other = AlternatingFlip()
    assert other.seed != aug.seed
    agreement = (other.flips(torch.arange(500), 3) == first).float().mean().item()
    assert 0.4 < agreement < 0.6  # an independent coin per image under another seed


def test_hash32_is_the_lowbias32_mix_on_32_bit_integers() -> None:
    def reference(x: int) -> int:
        m = 0xFFFFFFFF
        x ^= x >> 16
        x = (x * 0x7FEB352D) & m
        x ^= x >> 15
        x = (x * 0x846CA68B) & m
        return x ^ (x >> 16)

    values = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, *random.Random(0).sample(range(2**32), 200)]
    got = hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [reference(v) for v in values]


def test_alternating_flip_through_compose_with_a_pure_crop() -> None:
    images = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    targets = soft_targets(torch.arange(64) % 10, 10)
    aug = AlternatingFlip(seed=7)
    pipeline = Compose([CropFlip(padding=0, flip=False), aug])  # crop-flip with flip=False, no shift
    idx = torch.arange(100, 164)
    out, _ = pipeline(images, targets, context=BatchContext(1, idx))
    assert torch.equal(flipped_mask(out, images), aug.flips(idx, 1))
    assert aug.params() == {"seed": 7} and "seed=7" in repr(aug)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: AlternatingFlip(seed=-1), "seed"),
        (lambda: AlternatingFlip(seed=1.5), "seed"),  # type: ignore[arg-type]
        (lambda: AlternatingFlip(seed=0)(torch.zeros(2, 3, 4, 4), torch.zeros(2, 10)), "indices"),
        (
            lambda: AlternatingFlip(seed=0)(
                torch.zeros(2, 3, 4, 4), torch.zeros(2, 10), context=BatchContext(-1, torch.arange(2))
            ),
            "epoch",
        ),
        (
            lambda: AlternatingFlip(seed=0)(
                torch.zeros(2, 3, 4, 4), torch.zeros(2, 10), context=BatchContext(0, torch.arange(3))
            ),
            "indices",
        ),
    ],
)
def test_alternating_flip_user_errors(call: object, message: str) -> None:
    with pytest.raises(CifarBudgetError, match=message):
        call()  # type: ignore[operator]


# --- whitening initialisation ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def normalized_images() -> torch.Tensor:
    split = make_synthetic(256, seed=0)
    mean, std = normalization_stats(split.images)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (split.images.float() / 255 - m) / s


def output_covariance(conv: nn.Conv2d, x: torch.Tensor, channels: int) -> torch.Tensor:
    """Mean-centred covariance of the first ``channels`` outputs over images and positions."""
    with torch.no_grad():
        y = conv(x)[:, :channels].double()
    y = y.transpose(0, 1).reshape(channels, -1)
    y = y - y.mean(dim=1, keepdim=True)
    return y @ y.T / y.shape[1]


def test_whitened_stem_output_has_identity_covariance_on_the_init_batch(
    normalized_images: torch.Tensor,
) -> None:
    torch.manual_seed(0)
    model = AirNet(whiten=True)
    n_params = sum(p.numel() for p in model.parameters())
    keys = list(model.state_dict())
    model.init_from_data(normalized_images)
    stem_in = model.stem_input(normalized_images)
    cov = output_covariance(model.stem, stem_in, 12)
    lam = torch.linalg.eigvalsh(patch_covariance(model.stem, stem_in)).flip(0)
    # with eps = 5e-4 channel k has variance lam_k / (lam_k + eps) and no correlations
    assert torch.allclose(cov, torch.diag(lam / (lam + 5e-4)), atol=1e-6)  # measured: 4e-8
    # synthetic images are noisy (smallest eigenvalue 0.57), so eps barely matters: measured 8.8e-4
    assert (cov - torch.eye(12, dtype=cov.dtype)).abs().max().item() < 2e-3
    # the second 12 filters are the negatives of the first 12; the bias is zero
    w = model.stem.weight
    assert torch.equal(w[12:], -w[:12]) and torch.equal(model.stem.bias, torch.zeros(24))
    # the parameters are those of a plain AirNet, so budgets and checkpoints are unchanged
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert n_params == sum(p.numel() for p in AirNet().parameters()) and list(model.state_dict()) == keys
    assert torch.isfinite(model(normalized_images[:4])).all()


def test_identity_init_makes_each_group_conv_pass_its_first_input_channels_through() -> None:
    """airbench's partial identity: a group convolution at init copies input channel k to output k
    (k < c_in); the other filters, the parameters and the initialisation's draws are unchanged."""
    torch.manual_seed(0)
    model = AirNet((16, 32, 32), stem=8, identity_init=True)
    torch.manual_seed(0)
    plain = AirNet((16, 32, 32), stem=8)
    for group, plain_group in zip(model.groups, plain.groups, strict=True):
        for conv, plain_conv in ((group.conv1, plain_group.conv1), (group.conv2, plain_group.conv2)):
            c_in = conv.in_channels
            y = conv(torch.randn(2, c_in, 8, 8, generator=torch.Generator().manual_seed(c_in)))
            x = torch.randn(2, c_in, 8, 8, generator=torch.Generator().manual_seed(c_in))
            assert torch.allclose(y[:, :c_in], x, atol=1e-6)
            assert torch.equal(conv.weight[c_in:], plain_conv.weight[c_in:])
    assert torch.equal(model.stem.weight, plain.stem.weight) and torch.equal(
        model.head.weight, plain.head.weight
    )
    assert [p.shape for p in model.parameters()] == [p.shape for p in plain.parameters()]


@pytest.mark.parametrize(
    "optimizer",
    [
        "sgd",
        pytest.param(
            "muon", marks=pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch >= 2.9")
        ),
    ],
)
def test_frozen_whitening_keeps_the_stem_filters_and_leaves_them_out_of_the_budget(
    normalized_images: torch.Tensor, optimizer: str
) -> None:
    model = cifarbudget.create_model("airnet-small", whiten=True, whiten_freeze=True, identity_init=True)
    model.init_from_data(normalized_images)
    whitened = model.stem.weight.detach().clone()
    bias = model.stem.bias.detach().clone()
    opt = cifarbudget.optimizers().create(
        optimizer, model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    for _ in range(2):
        opt.zero_grad()
        model(normalized_images[:32]).logsumexp(1).mean().backward()
        opt.step()
    assert torch.equal(model.stem.weight, whitened) and not torch.equal(model.stem.bias, bias)
    plain = cifarbudget.check_budget(cifarbudget.create_model("airnet-small", whiten=True)).params
    assert cifarbudget.check_budget(model).params == plain - whitened.numel()
    with pytest.raises(CifarBudgetError, match="whiten_freeze needs whiten=true"):
        AirNet(whiten_freeze=True)


def test_whitening_with_eps_zero_is_exact_and_plain_airnet_has_no_init_hook(
    normalized_images: torch.Tensor,
) -> None:
    model = AirNet((16, 16, 16), whiten=True, whiten_eps=0.0)
    model.init_from_data(normalized_images)
    cov = output_covariance(model.stem, model.stem_input(normalized_images), 12)
    assert (cov - torch.eye(12, dtype=cov.dtype)).abs().max().item() < 1e-6  # float32 conv; measured 4e-8
    assert not hasattr(AirNet(), "init_from_data")  # whiten=False: the engine finds nothing to call


@pytest.mark.parametrize("out_channels", [5, 12, 18])
def test_whitening_filter_rule_for_other_widths(out_channels: int, normalized_images: torch.Tensor) -> None:
    conv = nn.Conv2d(3, out_channels, 2, bias=False)
    lam = whiten_conv_(conv, normalized_images, eps=0.0)
    d, k = 12, min(out_channels, 12)
    cov = output_covariance(conv, normalized_images, k)
    assert (cov - torch.eye(k, dtype=cov.dtype)).abs().max().item() < 1e-5
    # fewer channels than the patch dimension: the top-k principal directions (their variance, before
    # whitening, is the k largest eigenvalues)
    w = conv.weight.detach().flatten(1)[:k].double()
    unit = w / w.norm(dim=1, keepdim=True)
    cov_patches = patch_covariance(conv, normalized_images)
    explained = torch.einsum("kd,de,ke->k", unit, cov_patches, unit)
    assert torch.allclose(explained, lam[:k], rtol=1e-5)
    if out_channels > d:  # then the negatives of the top ones
        assert torch.equal(conv.weight[d:], -conv.weight[: out_channels - d])


def test_conv_patches_reproduce_the_convolution() -> None:
    x = torch.randn(3, 2, 9, 7, generator=torch.Generator().manual_seed(0))
    for conv in (
        nn.Conv2d(2, 4, 3, padding=1, stride=2),
        nn.Conv2d(2, 4, (2, 3), dilation=2),
        nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"),
    ):
        with torch.no_grad():
            y = conv(x)
            flat = conv_patches(conv, x) @ conv.weight.flatten(1).T + conv.bias
        assert torch.allclose(flat, y.permute(0, 2, 3, 1).reshape(-1, 4), atol=1e-5)


def test_whitening_user_errors(normalized_images: torch.Tensor) -> None:
    with pytest.raises(CifarBudgetError, match="at most 2 x 12"):
        whiten_conv_(nn.Conv2d(3, 25, 2), normalized_images)
    with pytest.raises(CifarBudgetError, match="groups"):
        whiten_conv_(nn.Conv2d(3, 6, 2, groups=3), normalized_images)


# --- TTA: the views counter, multicrop, selective --------------------------------------------------
class Counting(nn.Module):
    """A position-sensitive model (flattened pixels -> linear) that counts the images it sees."""

    def __init__(self, size: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * size * size, num_classes)
        self.images_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += x.shape[0]
        return self.linear(x.flatten(1))


def sample(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "policy", [NoTTA(), FlipTTA(), FlipShiftTTA(), MultiCropTTA(), MultiCrop18TTA(), Paper5TTA()]
)
def test_fixed_policies_count_n_views_per_image(policy: object) -> None:
    torch.manual_seed(0)
    model = Counting().eval()
    assert policy.views_computed == 0  # type: ignore[attr-defined]
    policy(model, sample(7))  # type: ignore[operator]
    policy(model, sample(5, seed=1))  # type: ignore[operator]
    n_views = policy.n_views  # type: ignore[attr-defined]
    assert policy.views_computed == model.images_seen == 12 * n_views  # type: ignore[attr-defined]


def test_multicrop_is_airbenchs_weighted_flip_translate_average() -> None:
    torch.manual_seed(0)
    model = Counting(size=8).eval()
    x = sample(4, size=8)
    views = MultiCropTTA().views(x)
    # translations by one pixel with reflect padding: view pixel (i, j) = image pixel (i -+ 1, j -+ 1)
    assert torch.equal(views[2][..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(views[4][..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(views[2][..., 0, 1:], x[..., 1, :-1])  # reflected border row
    assert torch.equal(views[3], views[2].flip(-1)) and torch.equal(views[5], views[4].flip(-1))
    # airbench94: 0.5 * mean(image, mirror) + 0.5 * mean over both translations of mean(view, mirror)
    with torch.no_grad():
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")

        def mirror(v: torch.Tensor) -> torch.Tensor:
            return 0.5 * model(v) + 0.5 * model(v.flip(-1))

        expected = (
            0.5 * mirror(x) + 0.5 * (mirror(padded[..., 0:8, 0:8]) + mirror(padded[..., 2:10, 2:10])) / 2
        )
    assert torch.allclose(MultiCropTTA()(model, x), expected, atol=1e-6)
    # other weights and probability averaging
    logits = torch.stack([model(v) for v in views]).detach()
    w = torch.tensor([0.35, 0.35, 0.075, 0.075, 0.075, 0.075]).view(-1, 1, 1)
    assert torch.allclose(MultiCropTTA(weight=0.3)(model, x), (w * logits).sum(0), atol=1e-6)
    probs = (w * F.softmax(logits, -1)).sum(0)
    assert torch.allclose(MultiCropTTA(weight=0.3, reduce="probs")(model, x), probs.log(), atol=1e-6)


@pytest.mark.parametrize("score", ["max-prob", "margin"])
def test_selective_runs_extra_views_only_for_the_least_confident(score: str) -> None:
    torch.manual_seed(0)
    model = Counting().eval()
    x = sample(50)
    flip, crop = FlipTTA()(model, x), MultiCropTTA()(model, x)
    probs = F.softmax(flip, -1)
    top2 = probs.topk(2, -1).values
    confidence = top2[:, 0] if score == "max-prob" else top2[:, 0] - top2[:, 1]
    least = set(confidence.argsort()[:10].tolist())  # round(0.2 * 50) = 10 least confident
    policy = SelectiveTTA(score=score)
    model.images_seen = 0
    out = policy(model, x)
    # the recorded cost is the views actually computed: 2 per image + 4 per selected image
    assert policy.views_computed == model.images_seen == 2 * 50 + 4 * 10
    assert policy.n_views == pytest.approx(2.8)
    changed = {i for i in range(50) if not torch.allclose(out[i], flip[i], atol=1e-6)}
    assert changed == least  # only the selected images get the extra views
    confident = [i for i in range(50) if i not in least]
    assert torch.allclose(out[confident], flip[confident], atol=1e-6)  # the base views' prediction
    assert torch.equal(out[confident].argmax(1), flip[confident].argmax(1))
    selected = sorted(least)
    assert torch.allclose(out[selected], crop[selected], atol=1e-5)  # the full multicrop prediction
    # the cost accumulates over calls
    policy(model, x[:20])
    assert policy.views_computed == model.images_seen == 140 + 2 * 20 + 4 * 4


def test_selective_extremes_and_chunking() -> None:
    torch.manual_seed(0)
    model = Counting().eval()
    x = sample(30)
    none = SelectiveTTA(fraction=0.0)
    assert torch.allclose(none(model, x), FlipTTA()(model, x), atol=1e-6) and none.views_computed == 60
    everything = SelectiveTTA(fraction=1.0, max_batch=7)
    assert torch.allclose(everything(model, x), MultiCropTTA()(model, x), atol=1e-5)
    assert everything.views_computed == 180 and everything.n_views == 6


# --- TTA: the reference paper's 5 views against torchvision and scipy -------------------------------
def notebook_views(image: np.ndarray) -> list[torch.Tensor]:
    """The notebook's five TTA views of one HWC uint8 image, normalised as the notebook does."""

    def gaussian_blur(img: Image.Image) -> Image.Image:  # as in Resnet.ipynb
        blurred = gaussian_filter(np.array(img), sigma=1.0)
        return Image.fromarray(blurred.astype(np.uint8))

    tta_transforms = [
        transforms.ToTensor(),
        transforms.Compose([transforms.RandomHorizontalFlip(p=1.0), transforms.ToTensor()]),
        transforms.Compose([transforms.Pad(4), transforms.CenterCrop(32), transforms.ToTensor()]),
        transforms.Compose([transforms.Lambda(gaussian_blur), transforms.ToTensor()]),
        transforms.Compose([transforms.RandomVerticalFlip(p=1.0), transforms.ToTensor()]),
    ]
    normalize = transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)
    return [normalize(t(Image.fromarray(image))) for t in tta_transforms]


def test_paper5_views_match_the_notebooks_torchvision_views() -> None:
    uint8 = make_synthetic(6, seed=3).images
    uint8[0, :, :4] = 255  # saturated and black regions
    uint8[1, :, -4:] = 0
    x = transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)(uint8.float() / 255)
    policy = Paper5TTA()
    ours = policy.views(x)
    assert len(ours) == policy.n_views == 5
    for i in range(uint8.shape[0]):
        reference = notebook_views(uint8[i].permute(1, 2, 0).numpy())
        for view, (got, want) in enumerate(zip(ours, reference, strict=True)):
            assert (got[i] - want).abs().max().item() < 1e-5, f"view {view} of image {i}"
    assert torch.equal(ours[2], x)  # pad 4 + centre crop is the image itself
    # the blur mixes colours: channel-wise blurring alone is far from the notebook's view
    separate = Paper5TTA(channel_blur=False).views(x)[3]
    assert (separate - ours[3]).abs().mean().item() > 0.1


def test_paper5_blur_options_match_scipy() -> None:
    uint8 = make_synthetic(3, seed=4).images
    x = transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)(uint8.float() / 255)
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    hwc = uint8.permute(0, 2, 3, 1).numpy().astype(np.float64)
    for channel_blur in (True, False):
        sigma = (2.0, 2.0, 2.0) if channel_blur else (2.0, 2.0, 0.0)
        got = Paper5TTA(sigma=2.0, channel_blur=channel_blur, quantize=False).blur(x)
        for i in range(3):
            want = torch.from_numpy(gaussian_filter(hwc[i], sigma=sigma)).permute(2, 0, 1).float() / 255
            assert (got[i] - (want - mean) / std).abs().max().item() < 1e-5


@pytest.mark.parametrize("shift", [1, 2])
def test_multicrop18_is_flips_times_the_image_and_its_eight_translations(shift: int) -> None:
    x = sample(3, size=8)
    views = MultiCrop18TTA(shift=shift).views(x)
    assert len(views) == 18
    assert torch.equal(views[0], x) and torch.equal(views[1], x.flip(-1))
    padded = F.pad(x, (shift,) * 4, mode="reflect")
    seen = set()
    for k, (dy, dx) in enumerate(MultiCrop18TTA.OFFSETS):
        view, mirrored = views[2 + 2 * k], views[3 + 2 * k]
        assert torch.equal(mirrored, view.flip(-1))
        # view pixel (i, j) = image pixel (i - dy * shift, j - dx * shift), reflected at the border
        top, left = shift - dy * shift, shift - dx * shift
        assert torch.equal(view, padded[..., top : top + 8, left : left + 8])
        inner = view[
            ..., max(0, dy * shift) : 8 + min(0, dy * shift), max(0, dx * shift) : 8 + min(0, dx * shift)
        ]
        src = x[
            ..., max(0, -dy * shift) : 8 + min(0, -dy * shift), max(0, -dx * shift) : 8 + min(0, -dx * shift)
        ]
        assert torch.equal(inner, src)
        seen.add((dy, dx))
    assert seen == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)} - {(0, 0)}
    # multicrop's six views are the first six, in its order; the weights sum to one
    assert all(torch.equal(a, b) for a, b in zip(MultiCropTTA(shift=shift).views(x), views[:6], strict=False))
    weights = MultiCrop18TTA(weight=0.4).view_weights()
    assert weights[:2] == [0.3, 0.3] and weights[2:] == [0.4 / 16] * 16 and sum(weights) == pytest.approx(1)


def test_new_policies_are_registered_with_their_view_counts() -> None:
    registry = cifarbudget.get_registry("tta")
    assert registry.create("multicrop").n_views == 6
    assert registry.create("multicrop18").n_views == 18
    assert registry.create("paper5").n_views == 5
    assert registry.create("selective").n_views == pytest.approx(2.8)
    assert registry.create("selective", fraction=0.5).n_views == pytest.approx(4.0)
    for name in ("multicrop", "multicrop18", "selective", "paper5"):
        assert registry.get(name).plugin == "cifarbudget.builtin.tta" and registry.get(name).description


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (MultiCropTTA, {"shift": 0}, "shift"),
        (MultiCropTTA, {"weight": 1.0}, "weight"),
        (MultiCrop18TTA, {"shift": 0}, "shift"),
        (SelectiveTTA, {"fraction": 1.5}, "fraction"),
        (SelectiveTTA, {"score": "entropy"}, "score"),
        (Paper5TTA, {"sigma": 0.0}, "sigma"),
        (Paper5TTA, {"std": (0.2, 0.2)}, "std"),
    ],
)
def test_tta_user_errors(factory: type, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CifarBudgetError, match=message):
        factory(**kwargs)


# --- linear decay to zero ---------------------------------------------------------------------------
PEAK = 0.1


def lr_trace(epochs: int, steps_per_epoch: int, **params: float) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=PEAK, momentum=0.9)
    sched = linear(opt, epochs=epochs, steps_per_epoch=steps_per_epoch, **params)
    lrs = []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_linear_decays_from_the_peak_to_exactly_zero_at_the_last_step() -> None:
    lrs = lr_trace(10, 5)  # T = 50 steps
    assert lrs[0] == PEAK and lrs[-1] == 0.0
    assert lrs[24] == pytest.approx(PEAK * 25 / 49)  # the middle: (T - 1 - k) / (T - 1)
    assert lrs == pytest.approx([PEAK * (49 - k) / 49 for k in range(50)], rel=1e-12, abs=1e-15)


def test_linear_with_warmup() -> None:
    lrs = lr_trace(10, 5, warmup_epochs=2)  # W = 10 warmup steps, then 39 steps down to 0
    assert lrs[:10] == pytest.approx([PEAK * (k + 1) / 11 for k in range(10)])
    assert lrs[10] == pytest.approx(PEAK) and lrs[-1] == 0.0
    assert lrs[10 + 20] == pytest.approx(PEAK * 19 / 39)
    assert registered_linear_description()


def registered_linear_description() -> str:
    entry = cifarbudget.get_registry("schedulers").get("linear")
    assert entry.plugin == "cifarbudget.builtin.schedulers"
    return entry.description


def test_linear_resumes_exactly_from_a_saved_state_dict() -> None:
    full = lr_trace(6, 5, warmup_epochs=1)

    def build() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=PEAK, momentum=0.9)
        return opt, linear(opt, epochs=6, steps_per_epoch=5, warmup_epochs=1)

    opt, sched = build()
    lrs = []
    for _ in range(17):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # the factor's state is plain ints
    opt, sched = build()
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    for _ in range(30 - 17):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(full, rel=1e-12, abs=1e-15) and lrs[-1] == 0.0


def test_stride_two_stem_whitens_the_non_overlapping_patches_and_halves_the_resolution(
    normalized_images: torch.Tensor,
) -> None:
    """``stem_stride=2``: the stem sees the image's non-overlapping 2x2 patches (no padding), the
    groups start at 16x16 (so a group's MACs are a quarter of stride 1's), and the whitening
    initialisation whitens exactly those patches."""
    model = AirNet((16, 32, 32), stem=24, whiten=True, whiten_eps=0.0, stem_stride=2)
    model.init_from_data(normalized_images)
    stem_in = model.stem_input(normalized_images)
    assert torch.equal(stem_in, normalized_images)
    out = model.stem(stem_in)
    assert out.shape[-2:] == (16, 16)
    cov = output_covariance(model.stem, stem_in, 12)
    assert (cov - torch.eye(12, dtype=cov.dtype)).abs().max().item() < 1e-5
    # the covariance is that of the patches at stride 2: one row per output position
    assert conv_patches(model.stem, stem_in).shape[0] == normalized_images.shape[0] * 16 * 16
    one = AirNet((16, 32, 32), stem=24)
    assert [p.shape for p in model.parameters()] == [p.shape for p in one.parameters()]
    macs = {s: cifarbudget.check_budget(AirNet((16, 32, 32), stem=24, stem_stride=s)).macs for s in (1, 2)}
    assert macs[2] < macs[1] / 3.5  # every layer runs at a quarter of the positions
    assert torch.isfinite(model(normalized_images[:4])).all()
    for bad in (0, 3, True, 1.5):
        with pytest.raises(CifarBudgetError, match="stem_stride must be 1 or 2"):
            AirNet(stem_stride=bad)


@pytest.mark.parametrize("option", ["whiten", "whiten_freeze", "identity_init", "bn_weight"])
@pytest.mark.parametrize("value", ["no", "false", 0, 1, None])
def test_airnet_switches_take_only_true_or_false(option: str, value: object) -> None:
    """A switch given as text or a number is an error, not silently true (``bool("no")`` is True)."""
    with pytest.raises(CifarBudgetError, match=f"airnet: {option} must be true or false"):
        AirNet(**{option: value})


@pytest.mark.parametrize(
    "optimizer",
    [
        "sgd",
        pytest.param(
            "muon", marks=pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch >= 2.9")
        ),
    ],
)
def test_fixed_batchnorm_scales_stay_one_and_leave_the_budget(
    normalized_images: torch.Tensor, optimizer: str
) -> None:
    """``bn_weight=False`` (airbench94's ``BatchNorm(weight=False)``): the scales stay exactly 1
    through training steps, the biases train, and the scales are not counted as parameters."""
    model = cifarbudget.create_model("airnet-small", bn_weight=False)
    opt = cifarbudget.optimizers().create(
        optimizer, model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True, bn_bias_lr_scale=64
    )
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    biases = [bn.bias.detach().clone() for bn in bns]
    for _ in range(2):
        opt.zero_grad()
        model(normalized_images[:32]).logsumexp(1).mean().backward()
        opt.step()
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in bns)
    assert all(not torch.equal(bn.bias, b) for bn, b in zip(bns, biases, strict=True))
    plain = cifarbudget.check_budget(cifarbudget.create_model("airnet-small")).params
    assert cifarbudget.check_budget(model).params == plain - sum(bn.num_features for bn in bns)


@pytest.mark.parametrize("act", ["silu", "relu"])
def test_airnet_activation_is_the_one_named_and_changes_nothing_counted(act: str) -> None:
    """``act=silu`` (hiverge) or ``relu`` replaces GELU after the stem and every BatchNorm: each group
    computes exactly conv -> pool -> BN -> act -> conv -> BN -> act with that function; the
    parameters, their initial values and the MACs counted are those of the GELU net."""
    fn = {"silu": torch.nn.functional.silu, "relu": torch.nn.functional.relu}[act]
    torch.manual_seed(0)
    model = AirNet((8, 16, 16), stem=8, act=act).eval()
    torch.manual_seed(0)
    gelu = AirNet((8, 16, 16), stem=8).eval()
    for (name, p), (_, q) in zip(model.named_parameters(), gelu.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    x = torch.randn(4, 3, 32, 32)
    h = fn(model.stem(model.stem_input(x)))
    for g in model.groups:
        h = fn(g.bn2(g.conv2(fn(g.bn1(g.pool(g.conv1(h)))))))
    expected = model.head(torch.nn.functional.adaptive_max_pool2d(h, 1).flatten(1)) * model.scale
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-6)
        assert not torch.allclose(model(x), gelu(x), atol=1e-4)
    ours, theirs = cifarbudget.check_budget(model), cifarbudget.check_budget(gelu)
    assert (ours.params, ours.macs) == (theirs.params, theirs.macs)


@pytest.mark.parametrize("bad", ["swish", "GELU", None, 1, ["silu"]])
def test_airnet_unknown_activation_is_one_line(bad: object) -> None:
    with pytest.raises(CifarBudgetError, match="airnet: act must be one of gelu, silu, relu"):
        AirNet(act=bad)  # type: ignore[arg-type]

"""The batched CPU augmentations against plain per-image references that make the same draws.

The fast CPU paths of :mod:`cifarbudget.augment.batch` (one joint draw, cached per-shape
constants, box geometry as stacked vectors, CutMix's batch box on the host, erasing that writes
only the boxes' rows) must give the same values, bit for bit, and consume the same random numbers
as the straightforward form: separate ``torch.rand``/``torch.randint`` draws in the documented
order, then each image transformed on its own in a Python loop. Each check also compares the next
draw after the call (the RNG stream is left where the plain form leaves it).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cifarbudget.augment.batch import (
    Blur,
    CropFlip,
    CutMix,
    RandomErasing,
    consecutive_draws,
    gaussian_kernels,
    is_channels_last,
    separable_blur,
)

SEEDS = range(12)
SIZES = (1, 7, 128)
LAYOUTS = ("channels_last", "contiguous")


def batch(n: int, layout: str, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 + seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    else:
        x = torch.randn(n, 3, 32, 32, generator=gen, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def soft_targets(n: int, seed: int) -> torch.Tensor:
    return torch.softmax(torch.randn(n, 10, generator=torch.Generator().manual_seed(seed)), dim=1)


def assert_bits_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.dtype == torch.float32:  # compare the bits (tells -0.0 from 0.0)
        actual, expected = actual.contiguous().view(torch.int32), expected.contiguous().view(torch.int32)
    assert torch.equal(actual, expected)


def run_both(aug, reference, images, targets, seed):
    """The augmentation (copying and in place) and the reference, each from ``seed``; checks the
    three agree, and that each leaves the generator in the same state."""
    torch.manual_seed(seed)
    want_x, want_t = reference(images.clone(), targets.clone())
    want_next = torch.rand(4)
    calls = [aug]
    if hasattr(aug, "apply_"):
        calls.append(aug.apply_)
    for call in calls:
        torch.manual_seed(seed)
        source = images.clone()
        x, t = call(source, targets.clone())
        assert_bits_equal(x, want_x)
        assert_bits_equal(t, want_t)
        assert torch.equal(torch.rand(4), want_next)
        if call is aug:
            assert torch.equal(source, images)  # the copying form leaves its input alone


@pytest.mark.parametrize("n", [1, 5, 128])
def test_consecutive_draws_equal_separate_draws_on_the_cpu(n: int) -> None:
    cpu = torch.device("cpu")
    torch.manual_seed(n)
    separate = torch.cat([torch.rand(n * 3), torch.rand(n), torch.rand(n)])
    after = torch.rand(2)
    torch.manual_seed(n)
    assert torch.equal(consecutive_draws(lambda m: torch.rand(m), cpu, n * 3, n, n), separate)
    assert torch.equal(torch.rand(2), after)
    torch.manual_seed(n)
    separate = torch.cat([torch.randint(0, 9, (n,)), torch.randint(0, 9, (n,))])
    after = torch.rand(2)
    torch.manual_seed(n)
    assert torch.equal(consecutive_draws(lambda m: torch.randint(0, 9, (m,)), cpu, n, n), separate)
    assert torch.equal(torch.rand(2), after)


# --- random erasing -------------------------------------------------------------------------------
def erasing_reference(aug: RandomErasing):
    def reference(images: torch.Tensor, targets: torch.Tensor):
        n, c, h, w = images.shape
        k, (a_lo, a_hi) = aug.attempts, aug.area
        log_lo, log_hi = math.log(aug.aspect[0]), math.log(aug.aspect[1])
        target_area = (a_lo + (a_hi - a_lo) * torch.rand(n, k)) * (h * w)
        aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, k))
        erase, top_u, left_u = torch.rand(n) < aug.p, torch.rand(n), torch.rand(n)
        colour = torch.randn(n, c) if aug.mode == "rand" else None
        heights = torch.sqrt(target_area * aspect).round().long()
        widths = torch.sqrt(target_area / aspect).round().long()
        out = images.clone()
        heights_, widths_, erase_ = heights.tolist(), widths.tolist(), erase.tolist()
        for i in range(n):
            fitting = [j for j in range(k) if 0 < heights_[i][j] < h and 0 < widths_[i][j] < w]
            j = fitting[0] if fitting else 0
            bh, bw = heights_[i][j], widths_[i][j]
            # the offsets are float32 products, truncated, as torch computes them
            top = min(int(top_u[i : i + 1] * (h - bh + 1)), h - 1)
            left = min(int(left_u[i : i + 1] * (w - bw + 1)), w - 1)
            if erase_[i] and fitting:
                fill = 0.0 if colour is None else colour[i][:, None, None]
                out[i, :, top : top + bh, left : left + bw] = fill
        return out, targets

    return reference


@pytest.mark.parametrize("mode", ["const", "rand"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_erasing_matches_per_image_reference(mode: str, layout: str) -> None:
    settings = [
        {"p": 0.5},
        {"p": 1.0, "area": (0.02, 0.2)},
        {"p": 1.0, "area": (0.3, 0.9), "attempts": 3},  # often no candidate fits
        {"p": 0.0},
    ]
    for params in settings:
        aug = RandomErasing(mode=mode, **params)
        for n in SIZES:
            for seed in SEEDS[:6]:
                run_both(aug, erasing_reference(aug), batch(n, layout, seed), soft_targets(n, seed), seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", [*LAYOUTS, "strided"])
@pytest.mark.parametrize("fill", ["zero", "colour", "noise"])
def test_fill_boxes_writes_exactly_the_boxes_in_memory_order(
    dtype: torch.dtype, layout: str, fill: str
) -> None:
    """The CPU box writer of erasing and Cutout: only the boxes' values change, to 0, to the
    image's colour, or to the noise in the batch's memory order (channels_last: row, column,
    channel; otherwise channel, row, column), for float types numpy has and has not (bfloat16);
    ``inplace`` writes into a channels_last or contiguous batch, never into the caller's otherwise."""
    from cifarbudget.augment.batch import fill_boxes

    gen = torch.Generator().manual_seed(11)
    if layout == "strided":  # every other column of a wider batch: neither layout
        images = torch.randn(6, 3, 32, 64, generator=gen).to(dtype)[..., ::2]
    else:
        images = batch(6, layout, 3).to(dtype)
    boxes = [(0, 0, 0, 32, 32), (2, 5, 7, 3, 9), (5, 31, 31, 1, 1), (3, 10, 0, 2, 32)]
    colour = torch.randn(6, 3, generator=gen).to(dtype)
    noise = torch.randn(3 * sum(h * w for _, _, _, h, w in boxes), generator=gen).to(dtype)
    expected, start = images.clone(), 0
    for i, top, left, h, w in boxes:
        if fill == "zero":
            value = torch.zeros(3, h, w, dtype=dtype)
        elif fill == "colour":
            value = colour[i][:, None, None].expand(3, h, w)
        elif layout == "channels_last":
            value = noise[start : start + 3 * h * w].view(h, w, 3).permute(2, 0, 1)
        else:
            value = noise[start : start + 3 * h * w].view(3, h, w)
        start += 3 * h * w
        expected[i, :, top : top + h, left : left + w] = value
    kwargs = {"colour": colour if fill == "colour" else None, "noise": noise if fill == "noise" else None}
    source = images.clone()
    out = fill_boxes(source, boxes, inplace=False, **kwargs)
    assert out is not source and torch.equal(source, images)
    if layout == "strided":
        owned = torch.zeros(6, 3, 32, 64, dtype=dtype)[..., ::2]
        owned.copy_(images)
    else:
        owned = images.clone()
    written = fill_boxes(owned, boxes, inplace=True, **kwargs)
    assert (written is owned) == (layout != "strided")
    as_bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]
    for got in (out, written):
        assert got.dtype == dtype and is_channels_last(got) == (layout == "channels_last")
        assert torch.equal(got.contiguous().view(as_bits), expected.contiguous().view(as_bits))
    assert fill_boxes(images, [], inplace=False, **kwargs) is images


# --- CutMix, batch mode -------------------------------------------------------------------------------
def cutmix_batch_reference(aug: CutMix):
    def reference(images: torch.Tensor, targets: torch.Tensor):
        n, _, h, w = images.shape
        lam = torch.rand(1) if aug.alpha == 1.0 else None
        assert lam is not None
        apply = bool(torch.rand(1) < aug.p)
        perm = torch.randperm(n)
        cy, cx = int(torch.randint(0, h, (1,))), int(torch.randint(0, w, (1,)))
        ratio = torch.sqrt(1.0 - lam)
        cut_h, cut_w = int(h * ratio), int(w * ratio)  # float32 products, truncated
        if not apply:
            return images, targets
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        if y0 == y1 or x0 == x1:
            return images, targets
        out = images.clone()
        for i in range(n):
            out[i, :, y0:y1, x0:x1] = images[int(perm[i]), :, y0:y1, x0:x1]
        area = torch.tensor([float((y1 - y0) * (x1 - x0))]) / (h * w)
        return out, (1.0 - area) * targets + area * targets[perm]

    return reference


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("p", [0.5, 1.0, 0.0])
def test_cutmix_batch_mode_matches_reference(layout: str, p: float) -> None:
    aug = CutMix(alpha=1.0, p=p, mode="batch")
    for n in SIZES:
        for seed in range(16):  # lam near 1 (an empty box) comes up now and then
            run_both(aug, cutmix_batch_reference(aug), batch(n, layout, seed), soft_targets(n, seed), seed)


# --- crop-flip ------------------------------------------------------------------------------------------
def crop_flip_reference(aug: CropFlip):
    def reference(images: torch.Tensor, targets: torch.Tensor):
        n, _, h, w = images.shape
        p = aug.padding
        dy, dx = torch.randint(0, 2 * p + 1, (n,)), torch.randint(0, 2 * p + 1, (n,))
        flip = torch.rand(n) < 0.5 if aug.flip else torch.zeros(n, dtype=torch.bool)
        pad = {"value": 0} if aug.padding_mode in ("black", "zeros") else {"mode": aug.padding_mode}
        out = torch.empty_like(images)
        for i in range(n):
            padded = F.pad(images[i : i + 1], (p, p, p, p), **pad)[0]
            crop = padded[:, int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w]
            out[i] = crop.flip(2) if flip[i] else crop
        return out, targets

    return reference


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("padding", "padding_mode", "flip", "dtype"),
    [
        (4, "black", True, torch.uint8),
        (2, "black", False, torch.uint8),
        (4, "reflect", True, torch.uint8),
        (3, "replicate", True, torch.float32),
        (4, "zeros", True, torch.float32),
    ],
)
def test_crop_flip_matches_per_image_reference(
    layout: str, padding: int, padding_mode: str, flip: bool, dtype: torch.dtype
) -> None:
    aug = CropFlip(padding, padding_mode, flip)
    for n in SIZES:
        for seed in SEEDS[:6]:
            images = batch(n, layout, seed, dtype)
            run_both(aug, crop_flip_reference(aug), images, soft_targets(n, seed), seed)


# --- Gaussian blur --------------------------------------------------------------------------------------
def blur_reference(aug: Blur):
    """The sync-free form (blur the whole batch, keep the drawn images) from separate draws."""

    def reference(images: torch.Tensor, targets: torch.Tensor):
        n = images.shape[0]
        lo, hi = aug.sigma
        sigma = lo + (hi - lo) * torch.rand(n)
        apply = torch.rand(n) < aug.p
        blurred = separable_blur(images, gaussian_kernels(sigma, aug.kernel_size // 2, images.dtype))
        return torch.where(apply[:, None, None, None], blurred, images), targets

    return reference


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel_size", [None, 3])
@pytest.mark.parametrize("p", [0.3, 1.0])
def test_blur_matches_batched_reference(layout: str, kernel_size: int | None, p: float) -> None:
    aug = Blur(sigma=(0.1, 1.5), p=p, kernel_size=kernel_size)
    for n in SIZES:
        for seed in SEEDS[:4]:
            run_both(aug, blur_reference(aug), batch(n, layout, seed), soft_targets(n, seed), seed)


# every builtin augmentation, with settings that reach its other code paths
LAYOUT_CASES = [
    ("crop-flip", {}),
    ("crop-flip", {"padding_mode": "black"}),
    ("crop-flip", {"padding_mode": "zeros"}),
    ("crop-flip", {"padding_mode": "replicate", "flip": False}),
    ("blur", {}),
    ("blur", {"sigma": [0.1, 1.5], "p": 0.3, "kernel_size": None}),
    ("blur", {"p": 1.0, "kernel_size": 11}),
    ("vflip", {}),
    ("erasing", {}),
    ("erasing", {"mode": "const"}),
    ("erasing", {"mode": "rand"}),
    ("cutout", {}),
    ("cutmix", {}),
    ("cutmix", {"mode": "batch", "p": 1.0}),
    ("mixup", {}),
    ("flip-alternating", {"seed": 3}),
    ("autoaugment", {}),
    ("randaugment", {}),
    ("trivialaugment", {}),
    ("progressive-resize", {"size": 24, "epochs": 5}),
]


@pytest.mark.parametrize(
    ("name", "params"), LAYOUT_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LAYOUT_CASES)]
)
def test_every_builtin_augmentation_gives_the_same_values_from_either_uint8_layout(
    name: str, params: dict
) -> None:
    """The engine hands a pipeline uint8 batches in the layout their split keeps, and a plugin's
    split may be channels_last: every builtin augmentation must give the same values and make the
    same random draws from a channels_last uint8 batch as from a contiguous batch of the same
    images (the normalised batches channels_last in both, as a channels_last run has them)."""
    from cifarbudget.augment.pipeline import BatchContext, Compose
    from cifarbudget.data.core import DeviceSplit
    from cifarbudget.plugins import get_registry

    images = torch.randint(
        0, 256, (96, 3, 32, 32), generator=torch.Generator().manual_seed(5), dtype=torch.uint8
    )
    labels = torch.arange(96) % 10
    data = DeviceSplit.from_tensors(
        images, labels, torch.device("cpu"), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26], True
    )
    index = torch.randperm(96, generator=torch.Generator().manual_seed(6))[:40]
    planar = images.index_select(0, index)
    packed = planar.contiguous(memory_format=torch.channels_last)
    outputs = []
    for batch in (planar, packed):
        aug = get_registry("augmentations").create(name, **params)
        pipeline = Compose([aug], [name], normalize=data.normalize)
        targets = F.one_hot(labels[index], 10).float()
        torch.manual_seed(7)
        got = [pipeline(batch, targets, BatchContext(epoch=e, indices=index)) for e in range(3)]
        outputs.append((got, torch.rand(1)))  # the generator's state after the draws
    for (x_planar, t_planar), (x_packed, t_packed) in zip(outputs[0][0], outputs[1][0], strict=True):
        assert_bits_equal(x_packed, x_planar)
        assert_bits_equal(t_packed, t_planar)
    assert_bits_equal(outputs[1][1], outputs[0][1])


class _PluginRaw:
    """A plugin's uint8-stage augmentation that does not say which layout it prefers."""

    stage = "uint8"

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, targets


LAYOUT_PICKS = [  # (augmentations, the layout the engine keeps the training split in)
    ([], "channels_last"),  # only the normalisation sees the uint8 batch
    (
        [("crop-flip", {"padding_mode": "black"}), ("blur", {}), ("vflip", {}), ("erasing", {})],
        "channels_last",
    ),
    ([("vflip", {}), ("crop-flip", {"padding_mode": "black"})], "channels_last"),
    ([("crop-flip", {"padding_mode": "reflect"}), ("cutmix", {})], "contiguous"),  # slow to pad channels_last
    ([("crop-flip", {"padding_mode": "replicate"})], "contiguous"),
    ([("crop-flip", {"padding_mode": "zeros"}), ("vflip", {})], "channels_last"),  # both run normalised
    ([("trivialaugment", {}), ("crop-flip", {"padding_mode": "black"})], "contiguous"),  # does not say
    ([("plugin", {}), ("vflip", {})], "contiguous"),
]


@pytest.mark.parametrize(("augs", "layout"), LAYOUT_PICKS, ids=[str(i) for i in range(len(LAYOUT_PICKS))])
def test_the_engine_keeps_the_training_split_in_the_layout_its_pipeline_prefers(augs, layout) -> None:
    """:func:`cifarbudget.engine.laid_out_for` stores a channels_last split's uint8 images
    channels_last only when every augmentation that runs on the uint8 batch says it is as fast
    there (``uint8_layout``); an epoch's batches are then the same values, layout, targets and
    draws as from the other layout (what the engine trains on does not depend on the choice)."""
    from cifarbudget.augment.pipeline import Compose, soft_targets
    from cifarbudget.data.core import DeviceSplit
    from cifarbudget.engine import augmented_batches, laid_out_for
    from cifarbudget.plugins import get_registry

    images = torch.randint(
        0, 256, (80, 3, 32, 32), generator=torch.Generator().manual_seed(8), dtype=torch.uint8
    )
    data = DeviceSplit.from_tensors(
        images, torch.arange(80) % 10, torch.device("cpu"), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26], True
    )
    registry = get_registry("augmentations")
    built = [_PluginRaw() if n == "plugin" else registry.create(n, **p) for n, p in augs]
    pipeline = Compose(built, [n for n, _ in augs], normalize=data.normalize)
    assert pipeline.preferred_uint8_layout() == layout
    chosen = laid_out_for(data, pipeline)
    assert chosen.images.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert torch.equal(chosen.images, images) and chosen.labels is data.labels
    epochs = []
    for split in (data.laid_out(channels_last=True), data.laid_out(channels_last=False)):
        torch.manual_seed(9)
        batches = list(
            augmented_batches(split, pipeline, lambda y: soft_targets(y, 10), 32, epoch=0, drop_last=False)
        )
        epochs.append((batches, torch.rand(1)))
    for (ya, xa, ta), (yb, xb, tb) in zip(epochs[0][0], epochs[1][0], strict=True):
        assert torch.equal(ya, yb) and xa.stride() == xb.stride()
        assert_bits_equal(xa, xb)
        assert_bits_equal(ta, tb)
    assert_bits_equal(epochs[0][1], epochs[1][1])
    plain = DeviceSplit.from_tensors(
        images, torch.arange(80) % 10, torch.device("cpu"), [0.5] * 3, [0.25] * 3
    )
    assert laid_out_for(plain, pipeline) is plain  # contiguous batches: the split stays as it is
    assert laid_out_for(data, lambda x, t, c: (x, t)).images.is_contiguous()  # a pipeline that does not say


@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_pad_images_is_f_pad_and_keeps_the_layout(mode: str, dtype: torch.dtype) -> None:
    from cifarbudget.augment.batch import pad_images

    for h, w in [(32, 32), (8, 12), (5, 3)]:
        for p in range(min(h, w)):
            x = torch.randint(
                0, 256, (4, 3, h, w), generator=torch.Generator().manual_seed(p), dtype=torch.uint8
            )
            for layout in (torch.contiguous_format, torch.channels_last):
                images = x.to(dtype).contiguous(memory_format=layout)
                kwargs: dict = {"value": 0} if mode == "constant" else {"mode": mode}
                expected = F.pad(x.to(dtype), (p, p, p, p), **kwargs)
                got = pad_images(images, p, mode)
                assert_bits_equal(got, expected)
                assert got.is_contiguous(memory_format=layout)

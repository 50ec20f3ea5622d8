"""Tests of the batched augmentation policies (:mod:`cifarbudget.augment.policies`).

The reference is torchvision itself: its magnitude tables (``_augmentation_space``), its
AutoAugment sub-policies (``_get_policies``) and the function its policies call to apply one
operation to one image (``torchvision.transforms.autoaugment._apply_op``, i.e.
``torchvision.transforms.functional`` on a uint8 tensor). Every operation, at every magnitude bin
and both signs, is compared image by image on synthetic (``make_synthetic``) and random uint8
images, plus images with flat or two-valued channels.

Max absolute difference observed against torchvision, on the 0..255 scale: 0 for all 15
operations (Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color,
Contrast, Sharpness, Posterize, Solarize, AutoContrast, Equalize, Invert), in both magnitude
spaces, for nearest and bilinear interpolation, with and without a fill. The tests therefore
assert exact equality (stricter than the <= 1 the issue allows).
"""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import autoaugment as tv

import cifarbudget
from cifarbudget.augment.batch import CropFlip
from cifarbudget.augment.pipeline import Compose, compose, soft_targets
from cifarbudget.augment.policies import (
    AUTOAUGMENT_POLICIES,
    OPS,
    RANDOM_OPS,
    SIGNED,
    AutoAugment,
    Plan,
    PolicyAugmentation,
    RandAugment,
    TrivialAugmentWide,
    apply_op,
    magnitude_space,
)
from cifarbudget.data.synthetic import make_synthetic
from cifarbudget.errors import RunError

# (policy, magnitude space, bins): the three torchvision magnitude tables our policies use
SPACES = [
    pytest.param(AutoAugment(), "standard", 10, id="autoaugment-10bins"),
    pytest.param(RandAugment(), "standard", 31, id="randaugment-31bins"),
    pytest.param(TrivialAugmentWide(), "wide", 31, id="trivialaugment-wide-31bins"),
]


def sample_images(h: int = 32, w: int = 32, n: int = 96) -> torch.Tensor:
    """Half synthetic CIFAR-like images, half random; a flat image and flat/two-valued channels."""
    images = torch.cat(
        [
            make_synthetic(n // 2, seed=3).images.repeat(1, 1, 2, 2)[:, :, :h, :w],  # tiled: any size
            torch.randint(0, 256, (n - n // 2, 3, h, w), generator=torch.Generator().manual_seed(5)),
        ]
    ).to(torch.uint8)
    images[0] = 77  # every channel flat: autocontrast/equalize leave it
    images[1, 0] = 0  # one flat channel
    images[2, :, :, : w // 2], images[2, :, :, w // 2 :] = 10, 240  # two values per channel
    images[3] = torch.randint(
        100, 103, (3, h, w), generator=torch.Generator().manual_seed(7)
    )  # a narrow range: equalize's step is small
    return images


def tv_magnitude(
    torchvision_policy: object, space_bins: int, op: str, bin_: int, negative: bool, h: int, w: int
) -> float:
    """The signed magnitude torchvision's policy passes to ``_apply_op`` for (op, bin, sign)."""
    if isinstance(torchvision_policy, tv.TrivialAugmentWide):
        table = torchvision_policy._augmentation_space(space_bins)
    else:
        table = torchvision_policy._augmentation_space(space_bins, (h, w))  # type: ignore[attr-defined]
    values, signed = table.get(op, (torch.tensor(0.0), False))
    magnitude = float(values[bin_].item()) if values.ndim > 0 else 0.0
    return -magnitude if signed and negative else magnitude


def torchvision_of(policy: PolicyAugmentation) -> object:
    if isinstance(policy, AutoAugment):
        return tv.AutoAugment(tv.AutoAugmentPolicy(policy.policy))
    if isinstance(policy, RandAugment):
        return tv.RandAugment(policy.num_ops, policy.magnitude, policy.num_bins)
    return tv.TrivialAugmentWide(policy.num_bins)


def reference(
    images: torch.Tensor,
    plan: Plan,
    policy: PolicyAugmentation,
    interpolation: str = "nearest",
    fill: list[float] | None = None,
) -> torch.Tensor:
    """torchvision, one image at a time, running each image's steps of ``plan`` in order."""
    _, _, h, w = images.shape
    tv_policy = torchvision_of(policy)
    out = []
    for i in range(images.shape[0]):
        img = images[i]
        for step in range(plan.ops.shape[1]):
            op = OPS[int(plan.ops[i, step])]
            magnitude = tv_magnitude(
                tv_policy, policy.num_bins, op, int(plan.bins[i, step]), bool(plan.negative[i, step]), h, w
            )
            img = tv._apply_op(img, op, magnitude, interpolation=InterpolationMode(interpolation), fill=fill)
        out.append(img)
    return torch.stack(out)


# many small per-image reference calls: one thread is faster on a shared CPU (restored after)
pytestmark = pytest.mark.usefixtures("single_thread")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.int() - b.int()).abs().max())


# --- the tables are torchvision's ------------------------------------------------------------------
@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_magnitude_tables_are_torchvisions(size: tuple[int, int]) -> None:
    h, w = size
    spaces = [
        ("standard", 10, tv.AutoAugment()._augmentation_space(10, (h, w))),
        ("standard", 31, tv.RandAugment()._augmentation_space(31, (h, w))),
        ("standard", 7, tv.RandAugment()._augmentation_space(7, (h, w))),
        ("wide", 31, tv.TrivialAugmentWide()._augmentation_space(31)),
        ("wide", 5, tv.TrivialAugmentWide()._augmentation_space(5)),
    ]
    for space, bins, theirs in spaces:
        ours = magnitude_space(space, bins, h, w)
        for op, (values, signed) in theirs.items():
            assert (op in SIGNED) == signed, op
            if values.ndim > 0:  # bit-identical float32 values
                assert torch.equal(ours[op], values.float()), (space, bins, op)
    # RandAugment/TrivialAugmentWide draw from the same 14 ops, in torchvision's order
    assert list(tv.RandAugment()._augmentation_space(31, (32, 32))) == list(RANDOM_OPS)
    assert list(tv.TrivialAugmentWide()._augmentation_space(31)) == list(RANDOM_OPS)


@pytest.mark.parametrize("name", sorted(AUTOAUGMENT_POLICIES))
def test_autoaugment_subpolicies_are_the_papers(name: str) -> None:
    """The 25 sub-policies (Cubuk et al. 2019, appendix) as torchvision lists them."""
    theirs = tv.AutoAugment()._get_policies(tv.AutoAugmentPolicy(name))
    assert [tuple(map(tuple, sub)) for sub in theirs] == [tuple(sub) for sub in AUTOAUGMENT_POLICIES[name]]
    assert len(theirs) == 25


# --- every operation, image by image ---------------------------------------------------------------
@pytest.mark.parametrize(("policy", "space", "bins"), SPACES)
@pytest.mark.parametrize("op", OPS)
def test_every_op_matches_torchvision_image_by_image(
    policy: PolicyAugmentation, space: str, bins: int, op: str
) -> None:
    """Each image gets its own bin and sign (all bins x both signs occur); observed max diff: 0."""
    images = sample_images()
    n = images.shape[0]
    k = OPS.index(op)
    bin_ = torch.arange(n) % bins
    negative = (torch.arange(n) // bins) % 2 == 1
    tables = policy.tables(32, 32, images.device)
    ours = apply_op(images, k, bin_, negative, tables)
    assert ours.dtype == torch.uint8 and ours.shape == images.shape
    plan = Plan(torch.full((n, 1), k), bin_[:, None], negative[:, None])
    theirs = reference(images, plan, policy)
    assert max_diff(ours, theirs) == 0, f"{op}: max |diff| {max_diff(ours, theirs)} (observed: 0)"
    if op == "Identity":
        assert torch.equal(ours, images)
    else:  # the op does something to some image
        assert not torch.equal(ours, images)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill", [None, [10.0, 200.4, 255.0]])
def test_geometric_ops_with_fill_and_interpolation_on_non_square_images(
    interpolation: str, fill: list[float] | None
) -> None:
    """Shears, translations, rotations on 24x40 images, every bin and sign; observed max diff: 0."""
    images = sample_images(24, 40, n=62)
    n = images.shape[0]
    for policy in (
        AutoAugment(fill=fill, interpolation=interpolation),
        TrivialAugmentWide(fill=fill, interpolation=interpolation),
    ):
        bins = policy.num_bins
        ops = torch.tensor(
            [OPS.index(op) for op in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")]
        )
        plan = Plan(
            ops[torch.arange(n) % 5][:, None],  # all five geometric ops in one batch: one warp
            (torch.arange(n) % bins)[:, None],
            ((torch.arange(n) // 3) % 2 == 1)[:, None],
        )
        ours = policy.apply(images, plan)
        theirs = reference(images, plan, policy, interpolation, fill)
        assert max_diff(ours, theirs) == 0, f"{type(policy).__name__}: max |diff| {max_diff(ours, theirs)}"
        # rotations by half the range or more move pixels in from outside: they get the fill colour
        far = (plan.ops[:, 0] == OPS.index("Rotate")) & (plan.bins[:, 0] >= bins // 2)
        assert far.sum() >= 2
        colour = torch.tensor([0, 0, 0] if fill is None else [10, 200, 255], dtype=torch.uint8)
        filled = (ours[far] == colour.view(1, 3, 1, 1)).all(dim=1).float().mean(dim=(1, 2))
        assert (filled > 0.05).all(), filled


# --- the policies: whole batches, sampling, grouping ---------------------------------------------
@pytest.mark.parametrize(
    "policy",
    [AutoAugment(), AutoAugment("svhn"), RandAugment(), RandAugment(3, 20), TrivialAugmentWide()],
    ids=repr,
)
def test_policy_matches_torchvision_image_by_image(policy: PolicyAugmentation) -> None:
    """A whole batch, different ops per image, several steps: each image is what torchvision's
    ``_apply_op`` makes of it with the same ops and magnitudes, in the same order."""
    images = sample_images(n=128)
    before = images.clone()
    torch.manual_seed(0)
    plan = policy.sample(images.shape[0], images.device)
    ours = policy.apply(images, plan)
    assert max_diff(ours, reference(images, plan, policy)) == 0
    assert len(plan.ops.unique()) >= 10  # the batch really was split into many op groups
    # images whose every step is Identity are untouched; the input is not modified
    untouched = (plan.ops == 0).all(dim=1)
    assert torch.equal(ours[untouched], images[untouched])
    assert torch.equal(images, before)


def test_sampling_follows_each_policys_rule() -> None:
    """Op, bin and sign frequencies over 40,000 draws, within 5 standard errors of the rule."""
    n = 40_000
    torch.manual_seed(0)

    def close(count: torch.Tensor, p: float) -> bool:
        return bool(abs(count.item() / n - p) <= 5 * (p * (1 - p) / n) ** 0.5)

    # RandAugment: num_ops steps, each op uniform over the 14 (never Invert), bin fixed
    plan = RandAugment(num_ops=2, magnitude=7).sample(n, torch.device("cpu"))
    assert plan.ops.shape == (n, 2) and (plan.bins == 7).all()
    assert plan.ops.max() < len(RANDOM_OPS) and OPS[len(RANDOM_OPS)] == "Invert"
    for k in range(len(RANDOM_OPS)):
        assert close((plan.ops[:, 0] == k).sum(), 1 / 14)
    assert close(plan.negative[:, 1].sum(), 0.5)
    # TrivialAugmentWide: one step, bins uniform
    plan = TrivialAugmentWide(num_magnitude_bins=31).sample(n, torch.device("cpu"))
    assert plan.ops.shape == (n, 1)
    for b in (0, 15, 30):
        assert close((plan.bins == b).sum(), 1 / 31)
    # AutoAugment: each sub-policy 1/25; each step applied with its probability
    policy = AutoAugment()
    plan = policy.sample(n, torch.device("cpu"))
    # ("Color", 0.4, 3), ("Brightness", 0.6, 7) is sub-policy 6 of the CIFAR-10 policy
    first = (plan.ops[:, 0] == OPS.index("Color")) & (plan.bins[:, 0] == 3)
    assert close(first.sum(), 0.4 / 25)
    second = plan.ops[:, 1] == OPS.index("Brightness")  # also ("Brightness", 0.7, 9) of sub-policy 7
    assert close(second.sum(), 0.6 / 25 + 0.7 / 25)
    assert close((second & (plan.bins[:, 1] == 7)).sum(), 0.6 / 25)
    assert close(plan.negative[:, 0].sum(), 0.5)
    # ("Invert", 0.0, None) in sub-policy 14 never runs; Invert overall: 0.1 + 0.1 of two sub-policies
    assert close((plan.ops == OPS.index("Invert")).sum(), 0.2 / 25)


def test_deterministic_under_seed_and_rng_depends_on_shape_only() -> None:
    images = sample_images(n=64)
    targets = soft_targets(torch.arange(64) % 10, 10)
    for policy in (AutoAugment(), RandAugment(), TrivialAugmentWide()):
        torch.manual_seed(1)
        a, t = policy(images, targets)
        torch.manual_seed(1)
        b, _ = policy(images, targets)
        torch.manual_seed(2)
        c, _ = policy(images, targets)
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert t is targets  # the targets pass through
        # the draws do not depend on the pixels: the RNG is in the same state afterwards
        torch.manual_seed(3)
        policy(images, targets)
        after_a = torch.rand(4)
        torch.manual_seed(3)
        policy(255 - images, targets)
        assert torch.equal(torch.rand(4), after_a)


def test_parameters_change_behaviour() -> None:
    images = sample_images(n=256)
    targets = soft_targets(torch.zeros(256, dtype=torch.long), 10)

    def mean_change(policy: PolicyAugmentation) -> float:
        torch.manual_seed(0)
        return float((policy(images, targets)[0].float() - images.float()).abs().mean())

    # RandAugment: magnitude 0 leaves shears/translations/rotations/blends/posterize as they are
    weak, strong = mean_change(RandAugment(magnitude=0)), mean_change(RandAugment(magnitude=30))
    assert strong > 2 * weak, (weak, strong)
    # more ops per image change images more; the plan has num_ops steps
    assert mean_change(RandAugment(num_ops=3)) > mean_change(RandAugment(num_ops=1))
    assert RandAugment(num_ops=3).sample(8, images.device).ops.shape == (8, 3)
    # TrivialAugmentWide's bins bound the drawn magnitudes
    assert TrivialAugmentWide(num_magnitude_bins=4).sample(1000, images.device).bins.max() == 3
    # AutoAugment's policies differ (SVHN's is mostly shears and inversions)
    torch.manual_seed(0)
    svhn = AutoAugment("svhn").sample(1000, images.device).ops
    torch.manual_seed(0)
    cifar = AutoAugment("cifar10").sample(1000, images.device).ops
    invert = OPS.index("Invert")  # SVHN's policy inverts ~30% of images, CIFAR-10's 0.8%
    assert (svhn == invert).sum() > 10 * (cifar == invert).sum()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RandAugment(num_ops=0), "num_ops"),
        (lambda: RandAugment(num_ops=1.5), "num_ops"),
        (lambda: RandAugment(magnitude=31), "magnitude"),
        (lambda: RandAugment(magnitude=-1), "magnitude"),
        (lambda: RandAugment(magnitude=3, num_magnitude_bins=3), "magnitude"),
        (lambda: RandAugment(num_magnitude_bins=1), "num_magnitude_bins"),
        (lambda: TrivialAugmentWide(num_magnitude_bins=1), "num_magnitude_bins"),
        (lambda: AutoAugment(policy="cifar100"), "policy"),
        (lambda: AutoAugment(fill=300), "fill"),
        (lambda: AutoAugment(fill=[1, 2]), "fill"),
        (lambda: TrivialAugmentWide(fill="black"), "fill"),
        (lambda: RandAugment(interpolation="bicubic"), "interpolation"),
    ],
)
def test_bad_parameters_raise_run_error(build: object, message: str) -> None:
    with pytest.raises(RunError, match=message) as info:
        build()  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_float_images_are_refused() -> None:
    images = torch.randn(4, 3, 32, 32)
    with pytest.raises(RunError, match="uint8"):
        TrivialAugmentWide()(images, soft_targets(torch.zeros(4, dtype=torch.long), 10))


# --- in the pipeline and the registry ------------------------------------------------------------
@pytest.mark.parametrize("policy", [AutoAugment(), RandAugment(), TrivialAugmentWide()], ids=repr)
def test_runs_in_compose_on_a_uint8_batch(policy: PolicyAugmentation) -> None:
    """``Compose`` runs the policy on the uint8 batch, normalises, then crop-flips."""
    split = make_synthetic(32)
    mean = torch.tensor([125.0, 123.0, 114.0]).view(1, 3, 1, 1)

    def normalize(x: torch.Tensor) -> torch.Tensor:
        return (x.float() - mean) / 64.0

    targets = soft_targets(split.labels, 10)
    pipeline = Compose([CropFlip(), policy], normalize=normalize)
    assert pipeline.uint8_augs == [policy] and policy.stage == "uint8"
    torch.manual_seed(0)
    out, out_targets = pipeline(split.images, targets)
    assert out.dtype == torch.float32 and out.shape == (32, 3, 32, 32)
    assert torch.equal(out_targets, targets)
    # the same as the policy, then normalisation, then crop-flip, under the same seed
    torch.manual_seed(0)
    by_hand = CropFlip()(normalize(policy(split.images, targets)[0]), targets)[0]
    assert torch.equal(out, by_hand)
    with pytest.raises(RunError, match="uint8"):
        pipeline(normalize(split.images), targets)


def test_registered_through_the_hook() -> None:
    registry = cifarbudget.get_registry("augmentations")
    expected = {"autoaugment": AutoAugment, "randaugment": RandAugment, "trivialaugment": TrivialAugmentWide}
    for name, cls in expected.items():
        entry = registry.get(name)
        assert entry.plugin == "cifarbudget.builtin.augmentations"
        assert "arXiv:" in entry.description
        aug = registry.create(name)
        assert type(aug) is cls and aug.name == name and aug.stage == "uint8"
        params = aug.params()
        assert json.loads(json.dumps(params)) == params
        for key in params:
            assert key in repr(aug)
    assert registry.create("randaugment", num_ops=3, magnitude=12).params()["magnitude"] == 12
    pipeline = compose(["crop-flip", ("randaugment", {"magnitude": 5})], normalize=lambda x: x.float() / 255)
    out, _ = pipeline(make_synthetic(8).images, soft_targets(torch.zeros(8, dtype=torch.long), 10))
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("policy", [AutoAugment(), RandAugment(), TrivialAugmentWide()], ids=repr)
def test_on_cuda_matches_torchvision_on_cuda(policy: PolicyAugmentation) -> None:
    images = sample_images(n=128).cuda()
    torch.manual_seed(0)
    plan = policy.sample(images.shape[0], images.device)
    assert max_diff(policy.apply(images, plan), reference(images, plan, policy)) == 0

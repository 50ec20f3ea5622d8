"""Losses (cifarbudget.losses): soft-target cross-entropy and knowledge distillation from a run."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cifarbudget
from cifarbudget.errors import RunError
from cifarbudget.losses import DistillationLoss, SoftTargetCrossEntropy, kd, soft_ce

RESNET20_MACS = 40_551_040  # conv + linear MACs of one 3x32x32 image (He et al. 2016 quote ~41M FLOPs)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SmallNet(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class Recorder(nn.Module):
    """A teacher that remembers its input and returns fixed-seed linear logits."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 4 * 4, classes)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return self.head(x.flatten(1))


MEAN_S, STD_S = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
MEAN_T, STD_T = [0.51, 0.47, 0.40], [0.20, 0.30, 0.22]


def soft_targets(labels: torch.Tensor, classes: int, smoothing: float = 0.1) -> torch.Tensor:
    return F.one_hot(labels, classes).float() * (1 - smoothing) + smoothing / classes


def normalise(raw: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    return (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# --- soft-target cross-entropy ------------------------------------------------------------------
def test_soft_ce_equals_torch_cross_entropy_with_label_smoothing():
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 10), torch.randint(0, 10, (32,))
    loss = soft_ce()
    assert isinstance(loss, SoftTargetCrossEntropy)
    smoothed = loss(logits, soft_targets(labels, 10, 0.1), images=torch.empty(0))
    torch.testing.assert_close(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.1))
    plain = loss(logits, F.one_hot(labels, 10).float(), images=torch.empty(0))
    torch.testing.assert_close(plain, F.cross_entropy(logits, labels))
    assert loss(logits.bfloat16(), soft_targets(labels, 10), images=torch.empty(0)).dtype == torch.float32
    assert loss.params() == {} and loss.inference_macs_per_image == 0


# --- distillation: the formula ------------------------------------------------------------------
def make_kd(teacher: nn.Module, *, alpha: float = 0.5, temperature: float = 4.0, same_stats: bool = True):
    loss = DistillationLoss(
        teacher,
        alpha=alpha,
        temperature=temperature,
        teacher_mean=MEAN_S if same_stats else MEAN_T,
        teacher_std=STD_S if same_stats else STD_T,
        teacher_id="teacher-run",
    )
    loss.setup(device="cpu", mean=MEAN_S, std=STD_S)
    return loss


def test_kd_with_alpha_zero_is_soft_ce_and_charges_no_teacher_compute():
    torch.manual_seed(1)
    x, labels = torch.randn(8, 3, 4, 4), torch.randint(0, 5, (8,))
    logits, targets = torch.randn(8, 5), soft_targets(labels, 5)
    teacher = Recorder()
    loss = make_kd(teacher, alpha=0.0)
    assert torch.equal(loss(logits, targets, images=x), soft_ce()(logits, targets, images=x))
    assert teacher.seen is None and loss.inference_macs_per_image == 0  # never ran, so not counted


def test_kd_with_the_student_as_teacher_and_alpha_one_is_zero():
    torch.manual_seed(2)
    student = SmallNet().eval()
    x, labels = torch.randn(16, 3, 8, 8), torch.randint(0, 5, (16,))
    teacher = copy.deepcopy(student)
    logits = student(x)
    assert make_kd(teacher, alpha=1.0)(logits, soft_targets(labels, 5), images=x).item() == 0.0
    half = make_kd(teacher, alpha=0.5)(logits, soft_targets(labels, 5), images=x)
    torch.testing.assert_close(half, 0.5 * soft_ce()(logits, soft_targets(labels, 5), images=x))


def test_kd_matches_hintons_formula_and_gradient():
    torch.manual_seed(3)
    teacher = Recorder()
    x, labels = torch.randn(8, 3, 4, 4), torch.randint(0, 5, (8,))
    targets = soft_targets(labels, 5)
    logits = (3 * torch.randn(8, 5)).requires_grad_(True)
    alpha, t = 0.7, 3.0
    loss = make_kd(teacher, alpha=alpha, temperature=t)
    value = loss(logits, targets, images=x)
    with torch.no_grad():
        teacher_logits = teacher(x)
    p_t, log_p_t = F.softmax(teacher_logits / t, 1), F.log_softmax(teacher_logits / t, 1)
    log_p_s = F.log_softmax(logits.detach() / t, 1)
    kl = (p_t * (log_p_t - log_p_s)).sum(1).mean()
    hard = -(targets * F.log_softmax(logits.detach(), 1)).sum(1).mean()
    torch.testing.assert_close(value, (1 - alpha) * hard + alpha * t * t * kl)
    # Hinton et al. sec. 2.1: d(T^2 KL)/dz = T (softmax(z/T) - softmax(v/T)), here / N for the mean
    (grad,) = torch.autograd.grad(
        make_kd(teacher, alpha=1.0, temperature=t)(logits, targets, images=x), logits
    )
    torch.testing.assert_close(grad, t * (F.softmax(logits.detach() / t, 1) - p_t) / 8)


def test_teacher_gets_no_gradient_and_keeps_its_statistics():
    torch.manual_seed(4)
    student, teacher = SmallNet(), SmallNet()
    loss = make_kd(teacher)
    teacher.train()  # even if someone switches it to train mode, it runs in eval mode
    stats = [b.clone() for b in teacher.buffers()]
    x, labels = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    loss(student(x), soft_targets(labels, 5), images=x).backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert all(torch.equal(a, b) for a, b in zip(stats, teacher.buffers(), strict=True))
    assert not teacher.training


def test_normalisation_conversion_is_the_teachers_normalisation():
    torch.manual_seed(5)
    raw = torch.rand(4, 3, 4, 4)  # images in 0..1
    teacher = Recorder()
    loss = make_kd(teacher, same_stats=False)
    student_input = normalise(raw, MEAN_S, STD_S)
    loss(torch.randn(4, 5), soft_targets(torch.arange(4), 5), images=student_input)
    torch.testing.assert_close(teacher.seen, normalise(raw, MEAN_T, STD_T), rtol=0, atol=1e-6)
    assert not torch.equal(teacher.seen, student_input)
    same = make_kd(Recorder(), same_stats=True)  # same normalisation: the very same tensor
    assert same.teacher_inputs(student_input) is student_input


def test_teacher_runs_once_per_batch_when_the_loss_is_evaluated_twice():
    calls = []
    teacher = Recorder()
    teacher.register_forward_hook(lambda *_: calls.append(1))
    loss = make_kd(teacher)
    x, targets = torch.randn(4, 3, 4, 4), soft_targets(torch.arange(4), 5)
    first = loss(torch.randn(4, 5), targets, images=x)
    loss(torch.randn(4, 5), targets, images=x)  # SAM's second pass: the same batch
    assert len(calls) == 1
    x.mul_(2)  # changed in place: the teacher must look again
    loss(torch.randn(4, 5), targets, images=x)
    loss(torch.randn(4, 5), targets, images=x.clone())  # another tensor
    assert len(calls) == 3
    assert torch.isfinite(first)


def test_distillation_errors():
    loss = DistillationLoss(Recorder(), teacher_mean=MEAN_T, teacher_std=STD_T)
    with pytest.raises(RuntimeError, match="setup"):
        loss(torch.randn(2, 5), torch.ones(2, 5) / 5, images=torch.randn(2, 3, 4, 4))
    loss.setup(device="cpu", mean=MEAN_S, std=STD_S)
    with pytest.raises(RunError, match="teacher gives logits of shape"):
        loss(torch.randn(2, 10), torch.ones(2, 10) / 10, images=torch.randn(2, 3, 4, 4))
    with pytest.raises(RunError, match="student mean has 2 channels, expected 3"):
        loss.setup(device="cpu", mean=[0.5, 0.5], std=STD_S)
    for kwargs, message in [
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"temperature": 0}, "temperature must be a positive number"),
        ({"teacher_std": [0.2, 0.0, 0.2]}, "teacher std must be positive"),
    ]:
        with pytest.raises(RunError, match=message):
            DistillationLoss(Recorder(), **{"teacher_mean": MEAN_T, "teacher_std": STD_T, **kwargs})


def test_kd_factory_rejects_bad_values_before_loading(tmp_path):
    with pytest.raises(RunError, match=r"alpha must be in \[0, 1\]"):
        kd(teacher=str(tmp_path), alpha=-0.1)
    with pytest.raises(RunError, match="temperature must be a positive number"):
        kd(teacher=str(tmp_path), temperature=float("nan"))
    with pytest.raises(RunError, match="no run at"):
        kd(teacher=str(tmp_path / "missing"))
    with pytest.raises(RunError, match="is not a run folder"):
        kd(teacher=str(tmp_path))


# --- distillation from a real run ---------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("teacher")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = cifarbudget.run(
            "resnet20",
            dataset="synthetic",
            epochs=1,
            train_subset=512,
            val_size=0,
            results_dir=results,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    assert result.status == "finished"
    return result, results / result.run_id


def test_kd_factory_loads_the_teacher_run(teacher_run, tmp_path):
    result, run_dir = teacher_run
    loss = kd(teacher=str(run_dir), alpha=0.3, temperature=2.0)
    assert loss.params() == {"teacher_run_id": result.run_id, "alpha": 0.3, "temperature": 2.0}
    assert loss.teacher_mean == result.data["mean"] and loss.teacher_std == result.data["std"]
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in loss.teacher.state_dict().items())
    assert loss.inference_macs_per_image == RESNET20_MACS
    # identity does not depend on where the folder is
    moved = shutil.copytree(run_dir, tmp_path / "elsewhere" / "teacher")
    assert kd(teacher=moved, alpha=0.3, temperature=2.0).params() == loss.params()

    # distil into a student with another normalisation: finite loss, gradients for the student only
    student = cifarbudget.create_model("resnet20")
    loss.setup(device=torch.device("cpu"), mean=MEAN_S, std=STD_S)
    torch.manual_seed(6)
    raw = torch.rand(8, 3, 32, 32)
    labels = torch.randint(0, 10, (8,))
    images = normalise(raw, MEAN_S, STD_S)
    value = loss(student(images), soft_targets(labels, 10), images=images)
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert all(p.grad is None for p in loss.teacher.parameters())
    with torch.no_grad():
        expected = loss.teacher(normalise(raw, result.data["mean"], result.data["std"]))
        torch.testing.assert_close(loss.teacher_logits(images), expected, rtol=1e-4, atol=1e-5)

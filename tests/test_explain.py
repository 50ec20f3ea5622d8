"""Grad-CAM grids (pytorch-grad-cam) and the most-confident-mistakes helper."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cifarbudget
from cifarbudget.errors import RunError
from cifarbudget.explain import (
    confident_mistakes,
    find_target_layer,
    gradcam_grid,
    gradcam_maps,
    mistakes_gradcam,
    most_confident_mistakes,
)
from cifarbudget.predict import load_inputs, load_run

pytestmark = pytest.mark.usefixtures("single_thread_module")  # many small CPU ops: one thread is faster


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cifarbudget.reset_plugins(autoload=False)
    result = cifarbudget.run(
        "resnet20",
        dataset="synthetic",
        epochs=1,
        train_subset=512,
        val_size=0,
        lr=0.05,
        batch_size=64,
        results_dir=tmp_path_factory.mktemp("runs"),
        progress=False,
    )
    assert result.status == "finished" and result.run_dir is not None
    return result.run_dir


def test_gradcam_grid_writes_a_png_of_the_expected_size(run_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "gradcam.png"
    grid = gradcam_grid(run_dir, "synthetic", out, n=6)
    image = Image.open(out)
    image.load()
    assert image.format == "PNG"
    # 4 columns of (image, heat map) pairs, 2 rows, a title: figsize (11.6, 3.9) inches at 110 dpi
    assert image.size == (round(11.6 * 110), round(3.9 * 110))
    assert grid.output == out and grid.target_layer == "layers" and grid.indices == list(range(6))
    assert grid.heatmaps.shape == (6, 32, 32) and grid.heatmaps.dtype == np.float32
    assert np.isfinite(grid.heatmaps).all()
    assert grid.heatmaps.min() >= 0.0 and grid.heatmaps.max() <= 1.0
    assert grid.heatmaps.reshape(6, -1).max(axis=1).max() > 0.5  # maps are scaled per image, not blank

    # labels and predictions are those of the run on these images
    inputs = load_inputs("synthetic")
    assert grid.labels == inputs.labels[:6].tolist()
    from cifarbudget.predict import predict

    preds = predict(run_dir, inputs)
    assert grid.predicted == preds.indices[:6].tolist()
    np.testing.assert_allclose(grid.confidence, preds.probs[:6].max(axis=1), atol=1e-4)


def test_gradcam_grid_with_chosen_images_and_layer(run_dir: Path, tmp_path: Path) -> None:
    inputs = load_inputs("synthetic")
    grid = gradcam_grid(run_dir, inputs, tmp_path / "g.png", indices=[5, 1], target_layer="layers.2")
    assert grid.indices == [5, 1] and grid.ids == ["6", "2"] and grid.target_layer == "layers.2"
    assert grid.heatmaps.shape == (2, 32, 32)
    with pytest.raises(RunError, match="the model has no layer 'layer9'"):
        gradcam_grid(run_dir, inputs, tmp_path / "x.png", target_layer="layer9")
    with pytest.raises(RunError, match=r"image indices must lie in 0\.\.1999"):
        gradcam_grid(run_dir, inputs, tmp_path / "x.png", indices=[2000])
    assert not (tmp_path / "x.png").exists()


class _Brightness(nn.Module):
    """Class 0 score = mean brightness, class 1 = minus it: Grad-CAM of class 0 is the brightness map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1, bias=False)
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_gradcam_points_at_the_evidence() -> None:
    model = _Brightness().eval()
    assert find_target_layer(model) == "conv"
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, :8, :8] = 1.0  # a bright square in the top-left corner
    maps = gradcam_maps(model, image, model.conv, [0])
    assert maps.shape == (1, 32, 32)
    assert maps[0, :8, :8].min() > 0.99 and maps[0, 16:, 16:].max() < 1e-6
    # class 1's evidence is negative everywhere: Grad-CAM keeps the positive part only
    assert np.abs(gradcam_maps(model, image, model.conv, [1])).max() == 0.0


def test_confident_mistakes_on_a_hand_made_case() -> None:
    probs = np.array(
        [
            [0.9, 0.1],  # right
            [0.2, 0.8],  # wrong, .8
            [0.6, 0.4],  # wrong, .6
            [0.05, 0.95],  # wrong, .95
            [0.3, 0.7],  # right
            [0.2, 0.8],  # wrong, .8 (tie with index 1: input order)
        ]
    )
    labels = np.array([0, 0, 1, 0, 1, 0])
    assert confident_mistakes(probs, labels, k=10) == [3, 1, 5, 2]
    assert confident_mistakes(probs, labels, k=2) == [3, 1]
    assert confident_mistakes(torch.tensor(probs), torch.tensor(labels), k=0) == []
    assert confident_mistakes(probs, np.array([0, 1, 0, 1, 1, 1]), k=3) == []


def test_most_confident_mistakes_runs_the_model() -> None:
    # a linear model on the mean of the red channel: logits (r, 1 - r)
    class RedLinear(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            r = x[:, 0].mean(dim=(1, 2))
            return torch.stack([r, 1 - r], dim=1) * 4

    images = torch.zeros(5, 3, 4, 4, dtype=torch.uint8)
    for i, red in enumerate([255, 0, 200, 30, 128]):
        images[i, 0] = red
    labels = torch.tensor([1, 1, 1, 1, 0])
    # mean 0 and std 1 (0..1 units): the model sees pixels / 255
    got = most_confident_mistakes(RedLinear(), images, labels, k=5, mean=[0, 0, 0], std=[1, 1, 1])
    # predicted class 0 when r > 0.5: images 0 (r=1), 2 (r=.78) wrong; image 4 (r=.502) predicts 0, right
    assert got == [0, 2]
    # without mean/std the images are fed as they are (floats)
    assert most_confident_mistakes(RedLinear(), images.float() / 255, labels, k=1) == [0]


def test_mistakes_gradcam_draws_the_most_confident_mistakes(run_dir: Path, tmp_path: Path) -> None:
    grid = mistakes_gradcam(run_dir, tmp_path / "mistakes.png", k=4, max_images=300)
    assert grid is not None and (tmp_path / "mistakes.png").stat().st_size > 1000
    assert grid.labels is not None and len(grid.indices) == 4
    assert all(p != y for p, y in zip(grid.predicted, grid.labels, strict=True))
    assert grid.confidence == sorted(grid.confidence, reverse=True)
    # they are the run's most confident mistakes among the first 300 test images
    from cifarbudget.predict import predict

    preds = predict(run_dir, load_inputs("synthetic"))
    wrong = [i for i in range(300) if preds.indices[i] != preds.targets[i]]  # type: ignore[index]
    top = sorted(wrong, key=lambda i: -preds.probs[i].max())[:4]
    assert sorted(grid.indices) == sorted(top)


def test_missing_grad_cam_names_the_extra(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    with pytest.raises(RunError, match=r"pip install 'cifarbudget\[explain\]'"):
        gradcam_grid(run_dir, "synthetic", tmp_path / "g.png", n=2)
    assert load_run(run_dir)[0].status == "finished"

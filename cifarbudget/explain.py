"""Grad-CAM pictures of a trained run's predictions, and its most confident mistakes.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, arXiv:1610.02391) weights each channel of a
convolutional feature map by the spatial mean of the gradient of the class score with respect
to it, sums the weighted channels and keeps the positive part: where in the image the evidence
for the class lies. The maps come from the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``,
optional extra ``[explain]``), for the predicted class of each image; each map is scaled to
[0, 1] and resized to the image.

The target layer, unless given by its dotted module name, is found by one forward pass of a
dummy image: the module that finishes **last** among those whose output is a 4-D feature map
with height and width above 1, i.e. the last convolutional feature map before global pooling.
For the ResNets that is the output of the last residual stage (conv, shortcut and ReLU
included), the layer Selvaraju et al. use and pytorch-grad-cam recommends for ResNets
(``model.layer4[-1]``), rather than the bare last ``Conv2d`` inside it, which precedes the
residual addition.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cifarbudget.errors import CifarBudgetError, RunError, describe
from cifarbudget.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cifarbudget.predict import Inputs

log = logging.getLogger(__name__)

DEFAULT_IMAGES = 16
_BATCH = 500


@dataclass
class GradCamGrid:
    """What :func:`gradcam_grid` drew: one entry per image, in grid order."""

    output: Path
    target_layer: str  # dotted module name inside the run's model
    indices: list[int]  # positions of the images in the input
    ids: list[str]
    predicted: list[int]  # predicted class index
    confidence: list[float]  # softmax probability of the predicted class
    classes: list[str]
    heatmaps: np.ndarray  # float32 (n, H, W) in [0, 1]
    labels: list[int] | None = None  # true class indices, when the input is labeled


def _require_gradcam() -> Any:
    try:
        import pytorch_grad_cam
    except ImportError:
        raise RunError("Grad-CAM needs the grad-cam package: pip install 'cifarbudget[explain]'") from None
    return pytorch_grad_cam


# --- the target layer ---------------------------------------------------------------------------
def _output_shapes(model: nn.Module, image_size: tuple[int, int]) -> dict[str, tuple[int, ...] | str]:
    """What each named module of ``model`` outputs on one dummy image, in the order the modules
    finish: the shape of a tensor output, else the output's type name (the last call counts for a
    module called twice; a module the forward pass does not call is absent)."""
    outputs: dict[str, tuple[int, ...] | str] = {}

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            outputs.pop(name, None)  # a module called again finishes later
            outputs[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    was_training = model.training
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros(1, 3, *image_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return outputs


def _is_spatial(shape: tuple[int, ...] | str) -> bool:
    return isinstance(shape, tuple) and len(shape) == 4 and min(shape[-2:]) > 1


def find_target_layer(model: nn.Module, image_size: tuple[int, int] = (32, 32)) -> str:
    """The dotted name of the last module (in execution order) whose output is a spatial feature map.

    "Spatial feature map": a 4-D tensor ``(N, C, h, w)`` with ``h > 1`` and ``w > 1``. Found
    with forward hooks on one dummy image; see the module docstring for why this rule.
    """
    return _last_spatial(model, _output_shapes(model, image_size))


def _last_spatial(model: nn.Module, outputs: dict[str, tuple[int, ...] | str]) -> str:
    finished = [name for name, shape in outputs.items() if _is_spatial(shape)]
    if not finished:
        raise RunError(
            f"found no convolutional feature map in {type(model).__name__}; pass the target layer by name"
        )
    return finished[-1]


def _resolve_layer(model: nn.Module, name: str | None, image_size: tuple[int, int]) -> tuple[str, nn.Module]:
    modules = dict(model.named_modules())
    if name is not None and (not name or name not in modules):
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)][-3:]
        raise RunError(
            f"the model has no layer {name!r}; the last conv layers are {', '.join(convs) or 'none'}"
        )
    outputs = _output_shapes(model, image_size)
    if name is None:
        name = _last_spatial(model, outputs)
        return name, modules[name]
    shape = outputs.get(name)
    if not (isinstance(shape, tuple) and len(shape) == 4):
        # Grad-CAM weighs the channels of a (N, C, H, W) feature map: a head's (N, classes) has none
        got = (
            "is not called by the forward pass"
            if shape is None
            else f"outputs {_shape_text(shape)} for one image"
        )
        spatial = [n for n, s in outputs.items() if _is_spatial(s)]
        hint = f"; omit the layer (--layer) for the default, {spatial[-1]!r}, the last spatial feature map"
        raise RunError(
            f"layer {name!r} {got}, not a 4-D (N, C, H, W) feature map as Grad-CAM needs"
            f"{hint if spatial else ''}"
        )
    return name, modules[name]


def _shape_text(shape: tuple[int, ...] | str) -> str:
    return f"({', '.join(map(str, shape))})" if isinstance(shape, tuple) else f"a {shape}"


# --- mistakes -----------------------------------------------------------------------------------
def confident_mistakes(probs: Any, labels: Any, k: int = DEFAULT_IMAGES) -> list[int]:
    """Indices of the ``k`` wrong predictions with the highest confidence, most confident first.

    ``probs`` ``(N, C)`` probabilities (or any scores whose row maximum ranks confidence);
    ``labels`` ``(N,)`` true classes. Ties keep the input order. Fewer than ``k`` when there are
    fewer mistakes.
    """
    p = torch.as_tensor(np.asarray(probs)) if not isinstance(probs, torch.Tensor) else probs.detach().cpu()
    y = torch.as_tensor(np.asarray(labels)) if not isinstance(labels, torch.Tensor) else labels.detach().cpu()
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise RunError(
            f"expected probabilities (N, C) and labels (N,), got {tuple(p.shape)} and {tuple(y.shape)}"
        )
    if k < 0:
        raise RunError(f"k must be at least 0, got {k}")
    confidence, predicted = p.max(dim=1)
    wrong = torch.nonzero(predicted != y.long()).flatten()
    order = torch.sort(-confidence[wrong].double(), stable=True).indices
    return wrong[order][:k].tolist()


@torch.no_grad()
def predict_probs(model: nn.Module, images: torch.Tensor, *, batch_size: int = _BATCH) -> torch.Tensor:
    """Softmax probabilities of ``model`` on ``images`` (float32, on the CPU), batch by batch."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = [torch.softmax(model(chunk.to(device)).float(), dim=1).cpu() for chunk in images.split(batch_size)]
    return torch.cat(out)


def most_confident_mistakes(
    model: nn.Module,
    images: torch.Tensor,
    labels: Any,
    k: int = DEFAULT_IMAGES,
    *,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    batch_size: int = _BATCH,
) -> list[int]:
    """Indices of the ``k`` most confident wrong predictions of ``model`` on ``images``.

    With ``mean``/``std`` (the run's, 0..1 units) ``images`` are uint8 pixels normalised as the
    trainer does; without them ``images`` are fed to the model as they are.
    """
    if mean is not None and std is not None:
        from cifarbudget.export import NormalizedModel

        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model = NormalizedModel(model, mean, std).to(device)
    model.eval()
    return confident_mistakes(predict_probs(model, images, batch_size=batch_size), labels, k)


# --- the grid -----------------------------------------------------------------------------------
def gradcam_maps(
    model: nn.Module, images: torch.Tensor, layer: nn.Module, classes: Sequence[int] | None = None
) -> np.ndarray:
    """Grad-CAM maps ``(N, H, W)`` in [0, 1] of ``model`` on ``images`` for ``classes`` (default: predicted)."""
    grad_cam = _require_gradcam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = None if classes is None else [ClassifierOutputTarget(int(c)) for c in classes]
    cam = grad_cam.GradCAM(model=model, target_layers=[layer])
    try:  # not "with cam": its __exit__ prints and swallows IndexErrors
        maps = cam(input_tensor=images, targets=targets)
    finally:
        cam.activations_and_grads.release()
    return np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0), 0.0, 1.0)


def gradcam_figure(
    images: torch.Tensor,
    heatmaps: np.ndarray,
    predicted: Sequence[int],
    confidence: Sequence[float],
    classes: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    columns: int = 4,
    title: str = "",
) -> Figure:
    """A grid of (image, image + Grad-CAM heat map) pairs with true and predicted labels.

    Titles: ``true NAME`` above the image (when known), ``pred NAME 87%`` above the heat map, green
    when right, red when wrong. Returns a :class:`matplotlib.figure.Figure` (no pyplot state).
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from cifarbudget.plots import LITERAL

    n = len(images)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    fig = Figure(figsize=(2.9 * columns, 1.75 * rows + (0.4 if title else 0)), layout="constrained")
    axes = np.asarray(fig.subplots(rows, 2 * columns, squeeze=False))
    jet = colormaps["jet"]

    def name(index: int) -> str:
        return classes[index] if 0 <= index < len(classes) else str(index)

    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        rgb = images[i].permute(1, 2, 0).cpu().numpy().astype(np.float32) / 255
        heat = jet(heatmaps[i])[..., :3]
        ax_img, ax_cam = axes[i // columns, 2 * (i % columns)], axes[i // columns, 2 * (i % columns) + 1]
        ax_img.imshow(rgb, interpolation="nearest")
        ax_cam.imshow(0.5 * rgb + 0.5 * heat, interpolation="nearest")
        color = "black"
        if labels is not None:
            right = int(labels[i]) == int(predicted[i])
            color = "#1a7f37" if right else "#c62828"
            ax_img.set_title(f"true {name(int(labels[i]))}", fontsize=7, **LITERAL)  # names as written
        ax_cam.set_title(
            f"pred {name(int(predicted[i]))} {100 * confidence[i]:.0f}%", fontsize=7, color=color, **LITERAL
        )
    if title:
        fig.suptitle(title, fontsize=9, **LITERAL)
    return fig


def _figure_png(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def gradcam_grid(
    run_dir: Path | str,
    inputs: Inputs | Path | str,
    output_png: Path | str,
    *,
    n: int = DEFAULT_IMAGES,
    target_layer: str | None = None,
    indices: Sequence[int] | None = None,
    columns: int = 4,
    title: str | None = None,
) -> GradCamGrid:
    """Draw Grad-CAM maps of the run at ``run_dir`` for images of ``inputs`` into ``output_png``.

    ``inputs``: an :class:`~cifarbudget.predict.Inputs` or anything
    :func:`~cifarbudget.predict.load_inputs` reads (a pickle, ``.npy``/``.npz``, a folder, or
    ``NAME[:ROOT]`` for a registered dataset's test split; the run's own dataset without ROOT
    reads the folder the run read). The images drawn are ``indices``
    when given, else the first ``n``. Each map explains the predicted class; labels are shown when
    the input has them. The PNG is written atomically. Runs on the CPU. A run that has not
    finished is explained with its last checkpoint, with a warning.
    """
    from cifarbudget.data.inputs import check_inputs
    from cifarbudget.export import NormalizedModel
    from cifarbudget.predict import Inputs, load_inputs, load_model, load_run, map_labels, with_run_data_dir
    from cifarbudget.results import FINISHED

    _require_gradcam()
    result, checkpoint = load_run(run_dir)
    if result.status != FINISHED:  # as predict says it
        log.warning(
            "run %s is %s (%d of %s epochs); explaining its last checkpoint",
            result.run_id,
            result.status,
            len(result.history),
            result.spec.get("epochs"),
        )
    # the run's own dataset named without a folder (imagefolder) reads the folder the run read
    data = inputs if isinstance(inputs, Inputs) else load_inputs(with_run_data_dir(inputs, result))
    check_inputs(data)
    if indices is None:
        if n < 1:
            raise RunError(f"n must be at least 1, got {n}")
        chosen = list(range(min(n, len(data))))
    else:
        chosen = [int(i) for i in indices]
        bad = [i for i in chosen if not 0 <= i < len(data)]
        if bad or not chosen:
            raise RunError(f"image indices must lie in 0..{len(data) - 1}, got {bad[:3] or 'none'}")
    mean, std = result.data.get("mean"), result.data.get("std")
    if not mean or not std:
        raise RunError(f"run {result.run_id}: its record has no normalisation mean/std")
    classes = list(result.data.get("classes") or [])
    num_classes = int(result.spec.get("num_classes") or len(classes))
    labels_all = map_labels(data, classes, num_classes)

    model = load_model(result, checkpoint).cpu().float()
    images = data.images[chosen]
    size = (int(images.shape[-2]), int(images.shape[-1]))
    try:
        layer_name, layer = _resolve_layer(model, target_layer, size)
        wrapped = NormalizedModel(model, mean, std).eval()
        probs = predict_probs(wrapped, images.float())
        confidence, predicted = probs.max(dim=1)
        heatmaps = gradcam_maps(wrapped, images.float(), layer, predicted.tolist())
    except CifarBudgetError:
        raise
    except RuntimeError as exc:
        first = describe(exc, with_type=False)
        raise RunError(
            f"model {result.spec['model']!r} cannot explain {size[0]}x{size[1]} images: {first}"
        ) from None

    labels = None if labels_all is None else [int(labels_all[i]) for i in chosen]
    if title is None:
        title = f"Grad-CAM of {result.run_id} (layer '{layer_name}') on {data.source or 'the input'}"
    fig = gradcam_figure(
        images,
        heatmaps,
        predicted.tolist(),
        confidence.tolist(),
        classes,
        labels,
        columns=columns,
        title=title,
    )
    output = Path(output_png).expanduser()
    atomic_write_bytes(output, _figure_png(fig))
    return GradCamGrid(
        output=output,
        target_layer=layer_name,
        indices=chosen,
        ids=[data.ids[i] for i in chosen],
        predicted=predicted.tolist(),
        confidence=confidence.tolist(),
        classes=classes,
        heatmaps=heatmaps,
        labels=labels,
    )


def mistakes_gradcam(
    run_dir: Path | str,
    output_png: Path | str,
    *,
    k: int = DEFAULT_IMAGES,
    data_dir: Path | str | None = None,
    max_images: int | None = None,
    target_layer: str | None = None,
    device: str | torch.device = "cpu",
) -> GradCamGrid | None:
    """Grad-CAM maps of the run's ``k`` most confident mistakes on its test split (for the report).

    The test split is loaded from the dataset registry (root: ``data_dir``, else the root the run
    recorded, else the default data dir); ``max_images`` limits the search to the first images
    (inference on a large split is slow on a CPU; pass a CUDA ``device`` for the search).
    Returns ``None`` when the model makes no mistake on them.
    """
    from cifarbudget.export import load_test_split
    from cifarbudget.predict import Inputs, load_model, load_run

    result, checkpoint = load_run(run_dir)
    split = load_test_split(result, data_dir, "load for Grad-CAM")
    name = result.spec["dataset"]
    images, labels = split.images, split.labels
    if max_images is not None:
        images, labels = images[:max_images], labels[:max_images]
    model = load_model(result, checkpoint).to(device)
    mistakes = most_confident_mistakes(
        model, images, labels, k, mean=result.data["mean"], std=result.data["std"]
    )
    if not mistakes:
        return None
    ids = [str(i) for i in range(1, len(images) + 1)]
    data = Inputs(
        images, ids, labels, list(split.classes), source=f"{name} test split", kind="dataset", dataset=name
    )
    title = (
        f"Grad-CAM of the {len(mistakes)} most confident mistakes of {result.run_id} on the {name} test split"
    )
    return gradcam_grid(run_dir, data, output_png, indices=mistakes, target_layer=target_layer, title=title)

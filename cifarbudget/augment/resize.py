"""Progressive resizing: the first epochs train on downscaled images (registered as ``progressive-resize``).

Sources: Hoffer et al., "Mix & Match: training convnets with mixed image sizes for improved
accuracy, speed and scale resiliency" (arXiv:1908.08986, 2019); the fast.ai DAWNBench ImageNet
entries (Howard, 2018), which trained at 128 then 224 then 288 pixels; Tan & Le, "EfficientNetV2"
(arXiv:2104.00298, 2021), sec. 4 "progressive learning". A convolutional network's cost grows with
the input's area, so an epoch at 24x24 costs about 56% of one at 32x32 (the network's exact MACs
at each size are counted, see below), and the early epochs of a short schedule, at a high learning
rate, learn the coarse features that survive downscaling. The last epochs train at the full
resolution, the one the model is evaluated at, so there is no train/test resolution mismatch at
the end (Touvron et al., "Fixing the train-test resolution discrepancy", arXiv:1906.06423).

Compute: an augmentation that changes the input size says so with ``input_size(epoch)``; the
training compute of a run is then counted epoch by epoch at the size each epoch trains at
(:func:`cifarbudget.compute.forward_macs_per_epoch`), so ``--compute-budget`` buys the extra
epochs honestly: the MACs of the network at 24x24 are counted with fvcore like those at 32x32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cifarbudget.augment.pipeline import BatchAugmentation, BatchContext, check

__all__ = ["ProgressiveResize"]


class ProgressiveResize(BatchAugmentation):
    """Downscale the batch to ``size x size`` pixels in epochs ``0 .. epochs-1``; pass it through after.

    Bilinear interpolation with antialiasing (``F.interpolate(..., antialias=True)``: a downscale
    averages the pixels it drops, as PIL's resize does, rather than aliasing them). Put it last in
    the pipeline (``--aug crop-flip+flip-alternating+progressive-resize``): the other augmentations
    then work on full-resolution images and their parameters (crop padding, box sizes) keep their
    meaning. The targets are not changed. Needs the epoch: ``wants_context = True``.

    The model must accept the smaller input (a network that ends in global pooling does; one with
    a fixed-size flatten does not, and the run says so before training when it counts its MACs).

    :param size: the side, in pixels, of the images of the reduced epochs (8-1024).
    :param epochs: how many epochs, from the first, train at ``size``; 0 turns it off.
    """

    name = "progressive-resize"
    wants_context = True
    per_image = True  # every image resized alike, by the epoch

    def __init__(self, size: int = 24, epochs: int = 5) -> None:
        check(
            isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 1024,
            f"progressive-resize: size must be a whole number of pixels in [8, 1024], got {size!r}",
        )
        check(
            isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 0,
            f"progressive-resize: epochs must be a whole number >= 0, got {epochs!r}",
        )
        self.size, self.epochs = size, epochs

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "epochs": self.epochs}

    def input_size(self, epoch: int) -> int | None:
        """The side of the images the model trains on in ``epoch`` (0-based); ``None``: unchanged."""
        return self.size if epoch < self.epochs else None

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, context: BatchContext | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check(context is not None, "progressive-resize: needs the batch's epoch (call it with context=...)")
        assert context is not None
        size = self.input_size(context.epoch)
        if size is None or tuple(images.shape[-2:]) == (size, size):
            return images, targets
        check(images.is_floating_point(), "progressive-resize: works on the normalised float batch")
        out = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if (
            images.dim() == 4
            and not images.is_contiguous()
            and images.is_contiguous(memory_format=torch.channels_last)
        ):
            out = out.contiguous(memory_format=torch.channels_last)  # keep the engine's layout
        return out, targets

"""Test-time augmentation policies: none, flip, flip-shift (registered in :mod:`cifarbudget.builtin.tta`).

A policy is called as ``policy(model, images) -> logits`` on a normalised float batch; it builds
``policy.n_views`` views of the batch with tensor ops, runs the model on all of them (on a GPU in
as few forward passes as ``max_batch`` allows, views concatenated along the batch dimension; on
a CPU one pass per view, which benchmarks/test_bench_tta.py measured to be faster there), and
averages the logits over the views, as airbench does. ``reduce="probs"`` averages the softmax
probabilities instead and returns their log (log-probabilities are valid logits: same argmax,
and cross-entropy on them is the NLL of the averaged prediction).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError

__all__ = ["FlipShiftTTA", "FlipTTA", "NoTTA", "TTAPolicy"]


class TTAPolicy:
    """Base class: subclasses define ``n_views`` and ``views(images)``; the rest is shared.

    :param reduce: ``"logits"`` (default) averages logits over views; ``"probs"`` returns the log
        of the mean softmax.
    :param max_batch: most images per forward pass; the views of a batch are concatenated and
        split into chunks of at most this many images (eval-mode BatchNorm makes chunking exact).
    """

    name: str = "tta"
    n_views: int = 1

    def __init__(self, reduce: str = "logits", max_batch: int = 4096) -> None:
        if reduce not in ("logits", "probs"):
            raise RunError(f"TTA policy {self.name!r}: reduce must be 'logits' or 'probs', got {reduce!r}")
        if int(max_batch) != max_batch or max_batch < 1:
            raise RunError(f"TTA policy {self.name!r}: max_batch must be an int >= 1, got {max_batch!r}")
        self.reduce, self.max_batch = reduce, int(max_batch)

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The ``n_views`` transformed copies of ``images``, each ``(N, C, H, W)``."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {"reduce": self.reduce, "max_batch": self.max_batch}

    def __call__(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        with torch.no_grad():
            views = self.views(images)
            # one forward pass over all views where that is faster (GPUs); on a CPU a batch twice as
            # large costs more than twice as much (caches), so each view gets its own pass there
            if len(views) * n <= self.max_batch and images.device.type != "cpu":
                logits = model(torch.cat(views) if len(views) > 1 else views[0])
            else:  # one view at a time, each chunked: bounded memory
                logits = torch.cat([model(chunk) for v in views for chunk in v.split(self.max_batch)])
            logits = logits.view(len(views), n, -1)
            if self.reduce == "logits":
                return logits.mean(dim=0)
            log_probs = F.log_softmax(logits.float(), dim=-1)
            return (torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(views))))).to(
                logits.dtype
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class NoTTA(TTAPolicy):
    """Plain evaluation: one view, the image itself."""

    name = "none"
    n_views = 1

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images]


class FlipTTA(TTAPolicy):
    """The image and its horizontal mirror: 2 views."""

    name = "flip"
    n_views = 2

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images, images.flip(-1)]


class FlipShiftTTA(TTAPolicy):
    """Flips x translations: the image and its mirror, each unshifted and shifted by ``shift``
    pixels left, right, up and down (reflect padding): 2 x 5 = 10 views.

    :param shift: translation in pixels (default 2).
    """

    name = "flip-shift"
    OFFSETS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx) in units of ``shift``
    n_views = 2 * len(OFFSETS)

    def __init__(self, shift: int = 2, reduce: str = "logits", max_batch: int = 4096) -> None:
        super().__init__(reduce=reduce, max_batch=max_batch)
        if int(shift) != shift or shift < 1:
            raise RunError(f"TTA policy 'flip-shift': shift must be an int >= 1, got {shift!r}")
        self.shift = int(shift)

    def params(self) -> dict[str, Any]:
        return {"shift": self.shift, **super().params()}

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        h, w, s = images.shape[-2], images.shape[-1], self.shift
        if s >= h or s >= w:
            raise RunError(f"TTA policy 'flip-shift': shift {s} is too large for {h}x{w} images")
        padded = F.pad(images, (s, s, s, s), mode="reflect")
        shifted = [
            padded[..., s + dy * s : s + dy * s + h, s + dx * s : s + dx * s + w] for dy, dx in self.OFFSETS
        ]
        return shifted + [v.flip(-1) for v in shifted]

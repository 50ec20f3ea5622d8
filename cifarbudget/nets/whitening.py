"""Data-dependent initialisation of a first convolution as a patch-whitening transform.

Source: Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (arXiv:2404.00498),
sec. 3.2 "Whitening initialization" (after tysam-code's hlb-CIFAR10): the first layer, a 2x2
convolution with 24 output channels, starts as the whitening transform of the training
distribution's 2x2 patches (its outputs have identity covariance), and its second 12 filters are
the negatives of the first 12, so that the information survives the activation that follows.

The model side of this is a protocol: a model may define ``init_from_data(images)``, which the
runner calls once with the first 5,000 normalised, un-augmented training images before the first
optimizer step; it is deterministic, so a resumed run builds the same model before its checkpoint
replaces the weights. :class:`cifarbudget.nets.airnet.AirNet` implements it with ``whiten=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError

__all__ = ["conv_patches", "patch_covariance", "whiten_conv_", "whitening_filters"]


def conv_patches(conv: nn.Conv2d, images: torch.Tensor) -> torch.Tensor:
    """The input patches ``conv`` sees on ``images``, one row per output position: ``(P, C*kh*kw)``.

    Honours the conv's padding (and padding mode), stride and dilation; row order matches
    ``conv.weight.flatten(1)``, so ``patches @ weight.flatten(1).T + bias`` is the conv's output.
    """
    if conv.groups != 1:
        raise RunError(f"whitening init: needs a conv with groups=1, got groups={conv.groups}")
    if isinstance(conv.padding, str):
        if conv.padding != "valid":
            raise RunError(f"whitening init: padding={conv.padding!r} is not supported (use ints or 'valid')")
        padding: tuple[int, ...] = (0, 0)
    else:
        padding = tuple(conv.padding)
    x = images
    if conv.padding_mode != "zeros" and any(padding):
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = (0, 0)
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (N * L, C*kh*kw)


@torch.no_grad()
def patch_covariance(conv: nn.Conv2d, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Covariance (mean-centred, float64) of the input patches of ``conv`` over ``images``.

    Accumulated over chunks of ``chunk`` images, so the patch matrix of a large set is never held
    in memory at once.
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise RunError(f"whitening init: needs images (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    dev = images.device if images.device.type != "mps" else torch.device("cpu")  # no float64 on MPS
    d = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    total = torch.zeros(d, dtype=torch.float64, device=dev)
    outer = torch.zeros(d, d, dtype=torch.float64, device=dev)
    count = 0
    for part in images.split(chunk):
        p = conv_patches(conv, part.float()).to(dev, torch.float64)
        total += p.sum(dim=0)
        outer += p.T @ p
        count += p.shape[0]
    mean = total / count
    return outer / count - torch.outer(mean, mean)


def whitening_filters(cov: torch.Tensor, out_channels: int, eps: float = 5e-4) -> torch.Tensor:
    """Filters ``(out_channels, d)`` that whiten patches of covariance ``cov`` ``(d, d)``.

    With eigenpairs ``(lam_k, v_k)`` of ``cov`` sorted by decreasing ``lam_k``, the whitening
    filters are ``w_k = v_k / sqrt(lam_k + eps)`` (``eps`` keeps near-zero directions bounded). The
    rows returned are the first ``out_channels`` of ``[w_1 .. w_d, -w_1 .. -w_d]``:

    - ``out_channels == 2 * d`` (airbench: 24 = 2 x 12 for 2x2 RGB patches): every filter and its
      negative;
    - ``out_channels == d``: the full whitening transform;
    - ``out_channels < d``: the top ``out_channels`` principal directions (PCA whitening);
    - ``d < out_channels < 2 * d``: all ``d`` filters, then the negatives of the top ones.

    More than ``2 * d`` output channels cannot all be whitening filters and is refused.
    """
    d = cov.shape[0]
    if cov.shape != (d, d):
        raise RunError(f"whitening init: covariance must be square, got {tuple(cov.shape)}")
    if not eps >= 0:
        raise RunError(f"whitening init: eps must be >= 0, got {eps!r}")
    if not 1 <= out_channels <= 2 * d:
        raise RunError(
            f"whitening init: the conv has {out_channels} output channels; a whitening init gives at "
            f"most 2 x {d} (the patch dimension and its negatives)"
        )
    eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0.0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]  # (d, d), row k = w_k
    return torch.cat([filters, -filters])[:out_channels]


@torch.no_grad()
def whiten_conv_(conv: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """Set ``conv``'s weights to whiten its input patches on ``images``; the bias (if any) to zero.

    ``images`` is the conv's input as the model feeds it (for a first layer: the normalised
    training images, after any padding the model applies before the conv). The filters follow
    :func:`whitening_filters`; with ``eps = 0`` the conv's output on ``images`` has exactly the
    identity covariance (over images and positions, for the first ``d`` channels), with
    ``eps > 0`` the variance of channel ``k`` is ``lam_k / (lam_k + eps)``. airbench uses
    ``eps = 5e-4``, freezes the weights and trains the bias for a few epochs only; freezing is left
    to the caller. Returns the eigenvalues ``lam`` (descending, float64) of the patch covariance.
    """
    cov = patch_covariance(conv, images)
    filters = whitening_filters(cov, conv.out_channels, eps)
    conv.weight.copy_(filters.view_as(conv.weight).to(conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
    return torch.linalg.eigvalsh(cov).flip(0)

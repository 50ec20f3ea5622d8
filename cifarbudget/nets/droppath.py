"""Stochastic depth / drop-path for the residual models in :mod:`cifarbudget.nets`.

Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep Networks with Stochastic Depth" (arXiv:1603.09382):
during training each residual branch is dropped with a probability that grows linearly with depth,
``p_l = (l / L) * p_L`` for block ``l`` of ``L`` (section 3, the linear decay rule); at test time
the full network is used. We drop per sample and rescale the kept branches by ``1 / (1 - p)``
(``timm.layers.DropPath``, the form used by most modern code), so evaluation is the identity.

A rate of 0 builds an ``nn.Identity``: the parameter count, the state dict and the forward of a
model are then exactly those of the model without the option.
"""

from __future__ import annotations

import math

from torch import nn

from cifarbudget.errors import RunError


def check_drop_path(drop_path: float) -> float:
    """Return ``drop_path`` as a float; raise :class:`RunError` unless it is in ``[0, 1)``."""
    if isinstance(drop_path, bool) or not isinstance(drop_path, int | float):
        raise RunError(f"drop_path must be a number in [0, 1), got {drop_path!r}")
    rate = float(drop_path)
    if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
        raise RunError(f"drop_path must be in [0, 1), got {drop_path!r}")
    return rate


def drop_path_rates(num_blocks: int, drop_path: float) -> list[float]:
    """Per-block drop rates ``drop_path * l / num_blocks`` for ``l = 1..num_blocks`` (linear rule).

    The last block gets ``drop_path`` itself (the paper's ``p_L``); the first gets
    ``drop_path / num_blocks``.
    """
    rate = check_drop_path(drop_path)
    return [rate * (i + 1) / num_blocks for i in range(num_blocks)]


def make_drop_path(rate: float) -> nn.Module:
    """``timm.layers.DropPath(rate)`` for ``rate > 0``; ``nn.Identity()`` for ``rate == 0``."""
    if check_drop_path(rate) == 0.0:
        return nn.Identity()
    from timm.layers import DropPath  # imported only when used: timm is slow to import

    return DropPath(rate)

"""A fast-training net in the style of airbench94 (Keller Jordan 2024), optionally with a whitened stem.

``AirNet(whiten=True)`` implements the data-initialisation protocol (see
:mod:`cifarbudget.nets.whitening`): it has an ``init_from_data(images)`` method that the engine
calls once, with normalised training images, before the first step; ``AirNet()`` has no such
attribute, so existing runs are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError
from cifarbudget.nets.common import init_weights
from cifarbudget.nets.whitening import whiten_conv_

# --- airbench-style fast net (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds") --------------------
# the activations an AirNet can use: airbench94's GELU (the default), hiverge's SiLU, plain ReLU
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "silu": F.silu,
    "relu": F.relu,
}


class ConvGroup(nn.Module):
    """conv -> pool -> BN -> act -> conv -> BN -> act, as in airbench94's blocks (act: GELU there).

    ``bn_weight=False`` keeps the BatchNorm scales fixed at 1 (not trainable), as airbench94."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        bn_weight: bool = True,
        act: Callable[[torch.Tensor], torch.Tensor] = F.gelu,
    ) -> None:
        super().__init__()
        self.act = act
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c_out, momentum=0.4)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.4)
        if not bn_weight:
            for bn in (self.bn1, self.bn2):
                bn.weight.requires_grad_(False)  # stays 1 (init_weights sets it): only the bias trains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class AirNet(nn.Module):
    """A 2x2 stem conv, three conv groups with max-pooling, global max-pool, scaled linear head.

    :param whiten: give the model ``init_from_data(images)``, which sets the stem to the whitening
        transform of the images' 2x2 patches (airbench's whitening initialisation, Jordan 2024,
        arXiv:2404.00498, sec. 3.2; with the default ``stem=24`` = 2 x 12, every whitening filter
        and its negative). Off by default: then the attribute does not exist (``hasattr`` is
        False), so an engine that calls it when present leaves such runs exactly as before. The
        parameters are the same either way (nothing is frozen unless ``whiten_freeze``).
    :param whiten_eps: ``eps`` of :func:`cifarbudget.nets.whitening.whiten_conv_` (airbench: 5e-4).
    :param whiten_freeze: with ``whiten``, keep the whitening filters fixed (the stem's weight does
        not train; its bias does), as airbench94 (which also stops the bias after 3 epochs: not
        done here). The frozen weight is not a trainable parameter, so it is not counted in the
        parameter budget (16 x 12 = 192 values for ``airnet-small``, 24 x 12 = 288 for ``airnet``).
    :param stem_stride: stride of the 2x2 stem (1: airbench's, the groups start at 32x32; 2: a
        non-overlapping "patchify" stem, the groups start at 16x16, so every group costs a quarter
        of the MACs and the same MACs buy twice the widths, four times the parameters). The
        whitening initialisation whitens the patches the stem actually sees at either stride.
    :param bn_weight: train the BatchNorm scales (the default). ``False`` keeps them fixed at 1, as
        airbench94 does (its ``BatchNorm(..., weight=False)``): only the BatchNorm biases train,
        and the fixed scales are not trainable parameters, so they leave the parameter budget.
    :param act: the activation after the stem and every BatchNorm: ``"gelu"`` (airbench94's, the
        default), ``"silu"`` (hiverge's cifar10-speedrun) or ``"relu"``. It has no parameters, so
        neither the budget nor the MACs counted change.
    :param identity_init: start every convolution of the groups as a partial identity: after the
        usual initialisation, its first ``c_in`` filters are replaced by Dirac filters (filter
        ``k`` copies input channel ``k``; ``torch.nn.init.dirac_``), the rest are kept, as
        airbench94's ``Conv.reset_parameters`` (Jordan 2024). Off by default; the parameters
        and the random draws of the initialisation are the same either way.
    """

    # options added after airnet runs were recorded: at these values the model is the one built
    # before they existed, so they stay out of the run identity (cifarbudget.identity)
    identity_neutral: ClassVar[dict[str, Any]] = {
        "identity_init": False,
        "whiten_freeze": False,
        "stem_stride": 1,
        "bn_weight": True,
        "act": "gelu",
    }

    def __init__(
        self,
        widths: Sequence[int] = (64, 256, 256),
        num_classes: int = 10,
        stem: int = 24,
        whiten: bool = False,
        whiten_eps: float = 5e-4,
        whiten_freeze: bool = False,
        identity_init: bool = False,
        stem_stride: int = 1,
        bn_weight: bool = True,
        act: str = "gelu",
    ) -> None:
        super().__init__()
        flags = {"whiten": whiten, "whiten_freeze": whiten_freeze, "identity_init": identity_init}
        for option, value in {**flags, "bn_weight": bn_weight}.items():
            if not isinstance(value, bool):  # "no" or "0" would otherwise count as true
                raise RunError(f"airnet: {option} must be true or false, got {value!r}")
        if isinstance(stem_stride, bool) or stem_stride not in (1, 2):
            raise RunError(f"airnet: stem_stride must be 1 or 2, got {stem_stride!r}")
        if not isinstance(act, str) or act not in ACTIVATIONS:
            raise RunError(f"airnet: act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
        self.act = ACTIVATIONS[act]
        self.whiten, self.whiten_eps = bool(whiten), float(whiten_eps)
        self.stem_stride = int(stem_stride)
        self.stem = nn.Conv2d(3, stem, 2, stride=self.stem_stride, padding=0, bias=True)
        if whiten_freeze:
            if not whiten:
                raise RunError(
                    "airnet: whiten_freeze needs whiten=true (it keeps the whitening filters fixed)"
                )
            self.stem.weight.requires_grad_(False)  # set once by init_from_data, never trained
        groups: list[ConvGroup] = []
        c_in = stem
        for w in widths:
            groups.append(ConvGroup(c_in, w, bn_weight=bn_weight, act=self.act))
            c_in = w
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(c_in, num_classes, bias=False)
        self.scale = 1 / 9
        init_weights(self)
        if identity_init:
            with torch.no_grad():
                for group in groups:  # the modules of self.groups
                    for conv in (group.conv1, group.conv2):
                        nn.init.dirac_(conv.weight[: conv.in_channels])

    def stem_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the stem conv sees: with stride 1, the image padded by one replicated row and column
        (keeps 32x32); with stride 2, the image itself (non-overlapping patches: 32x32 -> 16x16)."""
        if self.stem_stride == 2:
            return x
        return F.pad(x, (0, 1, 0, 1), mode="replicate")

    @property
    def init_from_data(self) -> Callable[[torch.Tensor], None]:
        """``init_from_data(images)``: whiten the stem on normalised training images (``whiten=True``)."""
        if not self.whiten:
            raise AttributeError("init_from_data")  # -> nn.Module.__getattr__: hasattr() is False
        return self._whiten_stem

    def _whiten_stem(self, images: torch.Tensor) -> None:
        whiten_conv_(self.stem, self.stem_input(images.to(self.stem.weight.device)), eps=self.whiten_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.act(self.stem(self.stem_input(x))))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.scale

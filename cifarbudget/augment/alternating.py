"""Derandomized horizontal flipping: the alternating flip of airbench (registered as ``flip-alternating``).

Source: Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (arXiv:2404.00498),
sec. 3.6 "Alternating flip". Random flipping shows an image in the same orientation in two
consecutive epochs half of the time; the alternating flip never does. In epoch 0 each image is
flipped with probability 1/2; in every later epoch an image is flipped exactly when it was not
flipped in the epoch before. So image ``i`` is flipped in epoch ``e`` iff ``bit_i XOR (e odd)``,
where ``bit_i`` is its epoch-0 coin.

The coins are a function of ``(seed, i)`` only: ``bit_i`` is one bit of a 32-bit integer hash of
the image index mixed with ``seed``, computed on the images' device with integer tensor ops. No
table is stored and no RNG state is consumed per batch, so the flips of a resumed run are those of
an uninterrupted one, whatever order the batches come in.
"""

from __future__ import annotations

from typing import Any

import torch

from cifarbudget.augment.pipeline import BatchContext, InPlaceAugmentation, check

__all__ = ["AlternatingFlip", "hash32"]

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in ``[0, 2**32)`` without int64 overflow."""
    lo = x * (c & 0xFFFF)  # < 2**48
    hi = ((x * (c >> 16)) & 0xFFFF) << 16  # only the low 16 bits of x * c_hi survive the shift mod 2**32
    return (lo + hi) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing function (the "lowbias32" xor-shift-multiply construction) on int64
    tensors holding values in ``[0, 2**32)``; every output bit depends on every input bit."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


class AlternatingFlip(InPlaceAugmentation):
    """Alternating horizontal flip (Jordan 2024, arXiv:2404.00498, sec. 3.6): a pure flip.

    Image ``i`` (its index in the training split) is mirrored in epoch ``e`` iff
    ``bit_i XOR (e % 2)``, with ``bit_i`` a fair coin fixed by ``(seed, i)``. Over two consecutive
    epochs every image is seen once in each orientation. Needs the batch's image indices and the
    epoch: ``wants_context = True``, called as ``aug(images, targets, context=BatchContext(epoch,
    indices))``; without indices it raises.

    Combine it with a translation and no random flip, e.g. ``--aug crop-flip --aug flip-alternating
    --aug-param crop-flip.flip=false`` (random crops are symmetric, so crop and flip commute in
    distribution and the order does not matter).

    :param seed: seeds the epoch-0 coins. ``None`` (default) draws one from torch's global RNG when
        the augmentation is built (so it follows the run's seed, and a run rebuilt after seeding
        draws the same one); ``params()`` records the seed in use, which reproduces the flips.
    """

    name = "flip-alternating"
    wants_context = True
    per_image = True  # a function of each image's index and the epoch

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        check(
            isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32,
            f"flip-alternating: seed must be an int in [0, 2**32), got {seed!r}",
        )
        self.seed = int(seed)
        # the seed's hash, a Python int: a tensor made from it on the device each batch would be a
        # host-to-device copy, which waits for the GPU's queue (a sync per training step)
        self._key = int(hash32(torch.tensor(self.seed, dtype=torch.int64)).item())

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def first_epoch_flips(self, indices: torch.Tensor) -> torch.Tensor:
        """Boolean ``bit_i`` for each index: whether the image is mirrored in epoch 0."""
        return (hash32(indices.to(torch.int64) ^ self._key) >> 31).bool()

    def flips(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Boolean mask: which of the images ``indices`` are mirrored in ``epoch``."""
        check(
            int(epoch) == epoch and epoch >= 0, f"flip-alternating: epoch must be an int >= 0, got {epoch!r}"
        )
        bits = self.first_epoch_flips(indices)
        return ~bits if int(epoch) % 2 else bits

    def transform(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        inplace: bool,
        context: BatchContext | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        indices = context.indices if context is not None else None
        check(
            indices is not None,
            "flip-alternating: needs the images' indices in the training split "
            "(call it as aug(images, targets, context=BatchContext(epoch, indices)))",
        )
        assert context is not None and indices is not None
        check(
            indices.shape == (images.shape[0],),
            f"flip-alternating: {images.shape[0]} images but indices of shape {tuple(indices.shape)}",
        )
        flip = self.flips(indices.to(images.device), context.epoch)
        out = images if inplace else None  # where reads each value before writing it: the same values
        return torch.where(flip[:, None, None, None], images.flip(-1), images, out=out), targets

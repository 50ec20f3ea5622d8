"""The image decoder: encoded image files (JPEG, PNG, ...) to one uint8 ``(N, 3, H, W)`` tensor.

Used by the image-folder dataset and by ``predict``'s folder inputs. Decoding runs in threads
(Pillow releases the GIL while it decodes); every image is converted to RGB, and a corrupt file
is a one-line :class:`DataError` naming it.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from cifarbudget.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")

# An encoded image: where it is (for messages) and how to read its bytes.
Source = tuple[str, Callable[[], bytes]]


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """One encoded image as an ``(H, W, 3)`` uint8 RGB array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode.startswith("I;16"):  # 16-bit grayscale: convert("RGB") would clip it to white
                wide = np.asarray(img).astype(np.uint32)
                gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            if img.mode in ("I", "F"):  # 32-bit integer or float pixels: no range to scale them from
                raise DataError(
                    f"image {where} has {'32-bit integer' if img.mode == 'I' else 'floating-point'} pixels "
                    "(PIL mode " + img.mode + "): convert it to 8-bit RGB"
                )
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:  # its message names an in-memory buffer, not the file
        raise DataError(f"corrupt or unreadable image {where}: not an image format PIL can read") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"corrupt or unreadable image {where}: {exc}") from None


def _decode_source(source: Source) -> np.ndarray:
    where, read = source
    try:
        data = read()
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read image {where}: {exc}") from None
    return decode_image(data, where)


def decode_images(sources: Sequence[Source], *, where: str = "") -> torch.Tensor:
    """Decode every source (in threads) into one uint8 ``(N, 3, H, W)`` tensor, in order.

    All images must have the same size; ``where`` names the collection in the error otherwise.
    """
    if not sources:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        arrays = list(pool.map(_decode_source, sources, chunksize=256))
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) != 1:
        common = max(shapes, key=[a.shape for a in arrays].count)
        odd = next(i for i, a in enumerate(arrays) if a.shape != common)
        size = "x".join(map(str, arrays[odd].shape[:2]))
        raise DataError(
            f"images in {where or 'the input'} have different sizes {shapes[:3]}: {sources[odd][0]} is "
            f"{size}, most are {common[0]}x{common[1]} (height x width); resize them to one size"
        )
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

"""ImageFolder data: ``train/<class>/*`` and ``test/<class>/*`` folders, or ``.zip`` archives of them.

Images are decoded once (Pillow, in threads) into one uint8 tensor per split and cached under
``$CIFARBUDGET_CACHE`` (default ``~/.cache/cifarbudget/cache``), keyed by the sources' paths,
sizes and modification times, so a changed archive is decoded again. The data folder itself is
only read (it may be read-only).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from cifarbudget.data.core import Split
from cifarbudget.data.decode import IMAGE_EXTENSIONS, decode_images
from cifarbudget.errors import DataError
from cifarbudget.io import atomic_write_bytes

_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)$")


def cache_dir() -> Path:
    env = os.environ.get("CIFARBUDGET_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarbudget" / "cache"


# A source is a list of (class name, display path, reader) for one split.
Item = tuple[str, str, Callable[[], bytes]]


def _folder_items(split_dir: Path) -> list[Item]:
    items: list[Item] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                items.append((class_dir.name, str(f), f.read_bytes))
    return items


def _zip_items(archives: list[Path], split: str) -> list[Item]:
    items: list[Item] = []
    for archive in archives:
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot read archive {archive}: {exc}") from None
        for name in sorted(zf.namelist()):
            m = _MEMBER.search(name)
            if m and m.group(1) == split and name.lower().endswith(IMAGE_EXTENSIONS):
                items.append((m.group(2), f"{archive}:{name}", lambda zf=zf, name=name: zf.read(name)))
    return items


def _find_items(root: Path, split: str) -> tuple[list[Item], list[Path]]:
    """The split's images and the files whose identity keys the cache."""
    if not root.exists():
        raise DataError(
            f"data folder {root} does not exist: pass --data-dir with train/ and test/ folders or zips"
        )
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (base / split).is_dir():
            return _folder_items(base / split), [base / split]
    archives = sorted(root.glob("*.zip"))
    items = _zip_items(archives, split)
    return items, archives


def _cache_key(sources: list[Path], split: str, n_items: int) -> str:
    h = hashlib.sha256(f"v1|{split}|{n_items}".encode())
    for src in sources:
        st = src.stat()
        h.update(f"|{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def imagefolder_classes(root: Path | str) -> list[str]:
    """The class names of the training split, from file names only (nothing is decoded)."""
    items, _ = _find_items(Path(root).expanduser(), "train")
    return sorted({c for c, _, _ in items})


def load_imagefolder(root: Path | str, *, train: bool) -> Split:
    """Load the train or test split of an ImageFolder tree (or zip archives of one)."""
    root = Path(root).expanduser()
    split = "train" if train else "test"
    items, sources = _find_items(root, split)
    if not items:
        raise DataError(
            f"no {split}/<class>/<image> files found in {root} (folders or .zip archives): "
            "pass --data-dir pointing at a folder with train/ and test/ (or zips of them)"
        )
    classes = sorted({c for c, _, _ in items})
    key = _cache_key(sources, split, len(items))
    cached = cache_dir() / f"imagefolder-{key}.pt"
    if cached.exists():
        try:
            blob = torch.load(cached, weights_only=True)
            return Split(
                blob["images"], blob["labels"], list(blob["classes"]), source=f"imagefolder:{root}:{split}"
            )
        except Exception:
            cached.unlink(missing_ok=True)  # a stale or truncated cache entry: decode again
    images = decode_images([(path, read) for _, path, read in items], where=f"{root}/{split}")
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[c] for c, _, _ in items], dtype=torch.long)
    buffer = io.BytesIO()
    torch.save({"images": images, "labels": labels, "classes": classes}, buffer)
    with contextlib.suppress(OSError):  # an unwritable cache only costs time
        atomic_write_bytes(cached, buffer.getvalue())
    return Split(images, labels, classes, source=f"imagefolder:{root}:{split}")

"""ImageFolder data: ``train/<class>/*`` and ``test/<class>/*`` folders, or ``.zip`` archives of them.

Every split has a content fingerprint: a SHA-256 over its images' class, name and content (for
zip members the CRC-32 and size the archive already stores; for files a SHA-256 of their bytes).
It identifies the data in a run's identity (runs on other data never pool together) and keys the
decode cache: images are decoded once (Pillow, in threads) into one uint8 tensor per split and
cached under ``$CIFARBUDGET_CACHE`` (default ``~/.cache/cifarbudget/cache``), so a changed image
is decoded again, never served stale. A cache file that cannot be read is rebuilt with a
warning; one that cannot be written only costs time. The data folder itself is only read.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import logging
import os
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cifarbudget.data.core import Split
from cifarbudget.data.decode import IMAGE_EXTENSIONS, decode_images
from cifarbudget.errors import DataError
from cifarbudget.io import atomic_write_bytes

log = logging.getLogger(__name__)

_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)$")
CACHE_VERSION = 2  # bump when the cached tensors change meaning


def cache_dir() -> Path:
    env = os.environ.get("CIFARBUDGET_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarbudget" / "cache"


@dataclass(frozen=True)
class Item:
    """One image of a split: its class, where it is (for messages), how to read it, what it holds."""

    label: str
    where: str
    read: Callable[[], bytes]
    content: Callable[[], str]  # a content key: "crc32:size" for zip members, the bytes' SHA-256 for files


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:  # a broken link, a permission: one line naming the file
        raise DataError(f"cannot read image {path}: {exc.strerror or exc}") from None


def _file_digest(path: Path) -> str:
    return hashlib.sha256(_read_file(path)).hexdigest()


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


def _hidden(part: str) -> bool:
    """A name no image folder means as data: hidden files and folders (``.DS_Store``, macOS's
    ``._*`` resource forks) and the ``__MACOSX`` folder of a zip made by macOS's Finder."""
    return part.startswith(".") or part == "__MACOSX"


def _folder_items(split_dir: Path) -> list[Item]:
    items: list[Item] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not _hidden(p.name)):
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(f.name) and not f.is_dir():
                read = functools.partial(_read_file, f)
                items.append(Item(class_dir.name, str(f), read, functools.partial(_file_digest, f)))
    return items


@dataclass(frozen=True)
class _Member:
    """One image entry of an archive's listing (pure data: safe to keep and to share with workers)."""

    split: str
    label: str
    filename: str
    key: str  # "crc32:size", as the archive stores them


@functools.lru_cache(maxsize=16)
def _zip_listing(archive: str, mtime_ns: int, size: int, inode: int) -> tuple[_Member, ...]:
    """The image entries of ``archive``, by name, read once per version of the file.

    Reading a zip's directory is most of the cost of listing the data (60,000 entries: about a
    second), and a run lists it several times (the data id, then each split). Keyed by the file's
    modification time, size and inode: an archive changed or replaced since is read again.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot read archive {archive}: {exc}") from None
    members = []
    for info in sorted(infos, key=lambda i: i.filename):
        name = info.filename
        m = _MEMBER.search(name)
        if m is None or not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        if any(_hidden(part) for part in name.split("/")):
            continue
        members.append(_Member(m.group(1), m.group(2), name, f"{info.CRC:08x}:{info.file_size}"))
    return tuple(members)


class _LazyZip:
    """An archive opened on the first read (a split whose images are cached is never read)."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self._zf: zipfile.ZipFile | None = None
        self._lock = threading.Lock()  # images are decoded in threads: open it once

    def read(self, filename: str) -> bytes:
        with self._lock:
            if self._zf is None:
                try:
                    self._zf = zipfile.ZipFile(self.archive)
                except (zipfile.BadZipFile, OSError) as exc:
                    raise DataError(f"cannot read archive {self.archive}: {exc}") from None
            zf = self._zf
        return zf.read(filename)  # ZipFile serialises its own reads of the shared file


def _zip_items(archives: list[Path], split: str) -> list[Item]:
    items: list[Item] = []
    seen: dict[tuple[str, str], str] = {}  # (class, file name) -> where: a second copy is refused
    for archive in archives:
        try:
            stat = archive.stat()
        except OSError as exc:
            raise DataError(f"cannot read archive {archive}: {exc.strerror or exc}") from None
        reader = _LazyZip(archive)
        for member in _zip_listing(str(archive), stat.st_mtime_ns, stat.st_size, stat.st_ino):
            if member.split != split:
                continue
            where = f"{archive}:{member.filename}"
            image = member.filename.rsplit("/", 1)[-1]
            first = seen.setdefault((member.label, image), where)
            if first != where:  # e.g. "data.zip" and its copy "data (1).zip": every image twice
                raise DataError(
                    f"{split} image {member.label}/{image} is in the data twice: {first} and "
                    f"{where}; remove the extra archive (or entry)"
                )
            items.append(
                Item(
                    member.label,
                    where,
                    functools.partial(reader.read, member.filename),
                    _constant(member.key),
                )
            )
    return items


def _find_items(root: Path, split: str) -> list[Item]:
    """The split's images, from ``<root>/[<sub>/]<split>/<class>/*`` or the ``*.zip`` archives in root."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}: pass --data-dir with train/ and test/ folders or zips")
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (base / split).is_dir():
            return _folder_items(base / split)
    return _zip_items(sorted(root.glob("*.zip")), split)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a listing builds its objects (tens of thousands of
    acyclic ones: the collections they trigger were four fifths of the time it took to list the
    CIFAR-10 zips, 1.2 of 1.5 s); back to what it was afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _items(root: Path, split: str) -> list[Item]:
    with _gc_paused():
        items = _find_items(root, split)
    if not items:
        raise DataError(
            f"no {split}/<class>/<image> files found in {root} (folders or .zip archives): "
            "pass --data-dir pointing at a folder with train/ and test/ (or zips of them)"
        )
    return items


def fingerprint(items: list[Item], split: str) -> str:
    """SHA-256 of the split's (class, image name, content key) listing: equal iff the data are equal."""
    h = hashlib.sha256(f"imagefolder-v1|{split}|{len(items)}".encode())
    for item in items:
        name = item.where.rsplit("/", 1)[-1]
        h.update(f"|{item.label}/{name}={item.content()}".encode())
    return h.hexdigest()


def imagefolder_metadata(root: Path | str) -> dict[str, Any]:
    """Classes, split sizes and the content fingerprint, from file listings (nothing is decoded)."""
    root = Path(root).expanduser()
    train, test = _items(root, "train"), _items(root, "test")
    classes = sorted({item.label for item in train})
    combined = hashlib.sha256((fingerprint(train, "train") + fingerprint(test, "test")).encode()).hexdigest()
    return {"classes": classes, "n_train": len(train), "n_test": len(test), "fingerprint": combined[:32]}


def imagefolder_classes(root: Path | str) -> list[str]:
    """The class names of the training split, from file names only (nothing is decoded)."""
    return sorted({item.label for item in _items(Path(root).expanduser(), "train")})


def load_imagefolder(root: Path | str, *, train: bool) -> Split:
    """Load the train or test split of an ImageFolder tree (or zip archives of one)."""
    root = Path(root).expanduser()
    split = "train" if train else "test"
    items = _items(root, split)
    classes = sorted({item.label for item in items})
    source = f"imagefolder:{root.resolve()}:{split}"
    cached = cache_dir() / f"imagefolder-v{CACHE_VERSION}-{fingerprint(items, split)[:24]}.pt"
    if cached.exists():
        try:
            blob = torch.load(cached, weights_only=True)
            return Split(blob["images"], blob["labels"], list(blob["classes"]), source=source)
        except Exception as exc:  # truncated or corrupt: decode again, and say so once
            log.warning(
                "the image cache %s is unreadable (%s); decoding the images again", cached, type(exc).__name__
            )
            cached.unlink(missing_ok=True)
    images = decode_images([(item.where, item.read) for item in items], where=f"{root}/{split}")
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[item.label] for item in items], dtype=torch.long)
    buffer = io.BytesIO()
    torch.save({"images": images, "labels": labels, "classes": classes}, buffer)
    try:
        atomic_write_bytes(cached, buffer.getvalue())
    except OSError as exc:  # an unwritable cache only costs time
        log.warning(
            "cannot write the image cache %s (%s); continuing without it", cached, exc.strerror or exc
        )
    return Split(images, labels, classes, source=source)

"""Atomic file writes (a result is either the old file or the new one, never half of either) and
run locks (one process trains, or cleans, a run folder at a time).

A write that fails (disk full, permissions, a read-only folder) raises :class:`StorageError`, a
one-line message naming the file and the cause (``No space left on device``) and saying that the
file is unchanged; the temporary file is removed. A process killed mid-write (SIGKILL) leaves a
``.<name>.<random>.tmp`` file beside the target, never a half-written target:
:func:`remove_stale_temporaries` clears them when the same folder is written again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarbudget.errors import StorageError


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise StorageError(
            f"cannot write {path}: {exc.strerror or exc} (errno {exc.errno}); the file is unchanged",
            exc.errno,
            exc.strerror,
        ) from None
    except BaseException:  # an interrupt: the target is untouched, the partial temporary goes
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path | str, name: str) -> int:
    """Delete ``.<name>.*.tmp`` files left in ``folder`` by a process killed mid-write; return how many."""
    removed = 0
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_torch_save(path: Path | str, obj: Any) -> None:
    """``torch.save`` through a temporary file and a rename."""
    import io as _io

    import torch

    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_toml(path: Path | str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """A TOML file as a dict (``tomllib``; ``tomli`` on Python 3.10); a missing file or bad TOML is
    one line, raised as ``error`` (the caller's own user error)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise error("reading a TOML file needs Python 3.11+ or 'pip install tomli'") from None
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML: {exc}") from None


# --- run locks: one process trains (or cleans) a run folder at a time ----------------------------
LOCK_DIR = ".locks"


def atomic_write_all(files: list[tuple[Path | str, bytes]]) -> None:
    """Write every ``(path, data)``, or none: each goes atomically (:func:`atomic_write_bytes`) to a
    temporary beside its target first, and the targets are replaced only once all are written. A
    failure (an unwritable folder, a full disk) leaves every target as it was, and says so."""
    import secrets

    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in files:
            target = Path(name).expanduser()
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
            try:
                atomic_write_bytes(tmp, data)
            except StorageError as exc:
                unchanged = (
                    "the file is unchanged"
                    if len(files) == 1
                    else f"neither {' nor '.join(str(n) for n, _ in files)} was changed"
                )
                raise StorageError(
                    f"cannot write {name}: {exc.strerror or exc}; {unchanged}", exc.errno, exc.strerror
                ) from None
            staged.append((tmp, target))
        for tmp, target in staged:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise StorageError(
                    f"cannot write {target}: {exc.strerror or exc}", exc.errno, exc.strerror
                ) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def lock_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / LOCK_DIR / f"{run_id}.lock"


@contextlib.contextmanager
def run_lock(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` for the block; yields False when another holder has it.

    A :class:`filelock.FileLock` (``flock`` on POSIX, ``msvcrt`` on Windows): the kernel drops it
    when its process dies (even by SIGKILL), so a killed sweep leaves nothing stale behind. Each
    call opens its own file description, so two workers in one process exclude each other too.
    On NFS, Linux emulates flock with POSIX locks, which work across clients.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(path, thread_local=False, preserve_lock_file=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    except OSError as exc:  # a read-only or full results folder: one line, not a traceback
        raise StorageError(
            f"cannot lock {path} (the results folder must be writable): {exc.strerror or exc}",
            exc.errno,
            exc.strerror,
        ) from None
    try:
        yield True
    finally:
        lock.release()


def is_locked(path: Path) -> bool:
    """Whether some process holds the run lock at ``path`` now (a probe that releases what it takes)."""
    if not path.exists():
        return False
    with run_lock(path, wait=False) as acquired:
        return not acquired

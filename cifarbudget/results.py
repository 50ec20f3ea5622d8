"""``RunResult``: the versioned record of one run (``result.json``), its provenance manifest, and I/O.

The schema is documented in ``docs/results.md`` and shipped as ``result_schema.json`` (JSON
Schema); :func:`validate_result` checks a record against it. Writes are atomic, so a killed
process leaves either the previous record or the new one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from cifarbudget.errors import CifarBudgetError
from cifarbudget.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SCHEMA_NAME = "cifarbudget.result"
SCHEMA_VERSION = 2  # 2: run ids hash the resolved training identity (cifarbudget.identity); "identity" field
SUPPORTED_SCHEMA_VERSIONS = (1, 2)  # version 1 records load with a warning: their ids hash the raw spec
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.csv"
ERROR_LOG = "error.log"  # the traceback of an unexpected exception that stopped the run
RUNNING, FINISHED, DIVERGED, FAILED = STATUSES = ("running", "finished", "diverged", "failed")
# A record with one of these is settled: running the same spec again returns it without training.
SETTLED = (FINISHED, DIVERGED)


@dataclass
class RunResult:
    """Everything a run produced, as stored in ``result.json``."""

    run_id: str
    status: str
    spec: dict[str, Any]
    budget: dict[str, Any]
    out_of_budget: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    pipeline: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)  # what the run id hashes (cifarbudget.identity)
    compute: dict[str, Any] = field(default_factory=dict)  # training and inference MACs (cifarbudget.compute)
    error: str | None = None
    schema: str = SCHEMA_NAME
    schema_version: int = SCHEMA_VERSION
    run_dir: Path | None = field(default=None, compare=False, repr=False)

    # Convenient views of the numbers people ask for first.
    @property
    def test_acc(self) -> float | None:
        return self.final.get("test_acc")

    @property
    def test_acc_tta(self) -> float | None:
        return self.final.get("test_acc_tta")

    @property
    def val_acc(self) -> float | None:
        return self.final.get("val_acc")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("run_dir")
        return {"schema": d.pop("schema"), "schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any], run_dir: Path | None = None) -> RunResult:
        if data.get("schema") != SCHEMA_NAME:
            raise CifarBudgetError("not a cifarbudget result (missing 'schema': 'cifarbudget.result')")
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise CifarBudgetError(f"unsupported result schema version {version!r}")
        if version != SCHEMA_VERSION:
            log.warning(
                "%s: a schema %s record: its identity predates the resolved-configuration run ids (schema %s); "
                "it loads, but a rerun of the same spec gets a new id",
                run_dir or data.get("run_id"),
                version,
                SCHEMA_VERSION,
            )
        known = {
            k: v
            for k, v in data.items()
            if k in cls.__dataclass_fields__ and k not in ("run_dir", "schema_version")
        }
        return cls(
            **known, schema_version=SCHEMA_VERSION if version == SCHEMA_VERSION else version, run_dir=run_dir
        )

    def save(self, run_dir: Path) -> None:
        """Write ``metrics.csv`` and then ``result.json`` atomically into ``run_dir`` (the record's
        status is the last thing written: a finished record has everything else beside it)."""
        self.run_dir = run_dir
        atomic_write_text(run_dir / METRICS_FILE, history_csv(self.history))
        atomic_write_json(run_dir / RESULT_FILE, self.to_dict())

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"run {self.run_id}: {self.status}" + (" (OUT OF BUDGET)" if self.out_of_budget else "")]
        f = self.final
        if f.get("val_acc") is not None:
            lines.append(
                f"  val acc   {f['val_acc']:.4f} ({self.data.get('n_val', 0)} held-out training images)"
            )
        if f.get("test_acc") is not None:
            lines.append(f"  test acc  {f['test_acc']:.4f}")
        evals = dict(f.get("tta_evals") or {})
        if not evals and f.get("test_acc_tta") is not None:  # records from before tta_evals
            evals = {f["tta"]: {"test_acc": f["test_acc_tta"], "views": f.get("tta_views")}}
        for policy, entry in evals.items():  # every policy evaluated on this run's checkpoint
            val = f", val {entry['val_acc']:.4f}" if entry.get("val_acc") is not None else ""
            lines.append(
                f"  test acc  {entry['test_acc']:.4f} with TTA {policy} ({entry.get('views')} views{val})"
            )
        if self.compute.get("train_macs"):
            from cifarbudget.budget import format_macs

            lines.append(f"  compute   {format_macs(self.compute['train_macs'])} training MACs")
        if self.timing.get("train_seconds") is not None:
            lines.append(
                f"  trained   {self.timing['train_seconds']:.1f}s, {self.timing.get('train_images_per_s', 0):.0f} images/s"
                f" on {self.manifest.get('device_name', self.manifest.get('device', '?'))}"
            )
        if self.error:
            lines.append(f"  error     {self.error}")
        if self.run_dir is not None:
            lines.append(f"  results   {self.run_dir}")
        return "\n".join(lines)


def load_result(path: Path | str) -> RunResult:
    """Load a ``result.json`` (or the run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CifarBudgetError(f"no result at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CifarBudgetError(f"corrupt result file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CifarBudgetError(f"corrupt result file {path}: not a JSON object")
    return RunResult.from_dict(data, run_dir=path.parent)


def history_csv(history: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def result_schema() -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "result_schema.json").read_text())


def validate_result(data: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``data`` does not match the documented schema."""
    import jsonschema

    jsonschema.validate(data, result_schema())


# --- provenance ---------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(cwd: Path | str, *args: str, check: bool = True) -> str:
    """The stripped output of ``git ARGS`` run in ``cwd`` (5 s at most)."""
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=check
    ).stdout.strip()


GIT_REVISION_ENV = "CIFARBUDGET_GIT_REVISION"


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The git commit of the installed cifarbudget package (``+dirty`` with uncommitted changes).

    Read from the package's own folder, not the current directory: a run started anywhere records
    the code that ran. ``None`` for an installed wheel (no git checkout around the package).
    Changes under the checkout's ``results/`` folder (records written by runs, such as a TTA
    evaluation added to a finished run's ``result.json``) do not count: they are not code.

    ``$CIFARBUDGET_GIT_REVISION``, when set and not blank, is returned instead, as given: for a
    copy of the tree without its ``.git`` (a lent GPU machine, ``benchmarks/gpu_suite.py
    --git-revision``), where git cannot tell. Read on the first call, like the checkout (cached
    per process; ``git_revision.cache_clear()`` reads both again).
    """
    given = os.environ.get(GIT_REVISION_ENV, "").strip()
    if given:
        return given
    package_dir = Path(__file__).resolve().parent
    try:
        top = _git(package_dir, "rev-parse", "--show-toplevel")
        if not top or not package_dir.is_relative_to(Path(top).resolve()):
            return None
        rev = _git(package_dir, "rev-parse", "HEAD")
        changes = ("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
        dirty = _git(top, *changes, check=False)
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def manifest(settings: Any, seed: int) -> dict[str, Any]:
    """Package versions, git revision, hardware, backend flags, command line and start time of a run.

    ``settings`` is a :class:`cifarbudget.device.DeviceSettings` (or a device, for records of runs
    that failed before their settings existed).
    """
    import torch

    from cifarbudget.device import DeviceSettings, backend_flags, cpu_info, device_name

    device = settings.device if isinstance(settings, DeviceSettings) else torch.device(str(settings))
    return {
        "cifarbudget": _version("cifarbudget"),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "git_revision": git_revision(),
        "device": str(device),
        "device_name": device_name(device),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "fvcore": _version("fvcore"),
        "torchinfo": _version("torchinfo"),
        "numpy": _version("numpy"),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_info(),
        "backend": backend_flags(device),
        "seed": seed,
        "command": " ".join(sys.argv),
        "started_at": now(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

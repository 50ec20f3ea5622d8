"""Where and how tensors run: device choice, precision, memory format and backend flags.

One place for every entry point that runs a model (a run, predict, bench, the sweep workers):
:func:`resolve` turns the user's options (``None`` = not given) into :class:`DeviceSettings`
with the defaults below, and :func:`configure_backends` sets the global backend flags once and
returns them for the run's manifest.

Defaults: the best available device (cuda, then mps, then cpu); bf16 autocast on CUDA only;
channels_last on CUDA and on the CPU (oneDNN: resnet20 trains 1.10-1.34x and wrn16-4
1.08-1.10x faster on 2 AMD EPYC cores, docs/performance.md); on CUDA, cuDNN autotuning and TF32
matmuls unless ``deterministic`` asks for reproducible kernels (then cuDNN deterministic
algorithms, ``torch.use_deterministic_algorithms`` and the cuBLAS workspace setting).
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch

from cifarbudget.errors import RunError

CUBLAS_WORKSPACE = ":4096:8"  # what torch.use_deterministic_algorithms needs for cuBLAS on CUDA >= 10.2


@dataclass(frozen=True)
class DeviceSettings:
    """How a model runs (never what it learns: none of these is part of a run's identity).

    ``aug_chunk`` is how many training batches are augmented at once; it changes which random draw
    each image gets (not their distribution), so it is recorded with the run (``manifest.engine``).
    """

    device: torch.device
    amp: bool = False  # bf16 autocast
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    # training batches augmented at once (cifarbudget.engine.augmented_batches): 1 = each on its own
    aug_chunk: int = 1

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.preserve_format

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["device"] = str(self.device)
        return d


def check_aug_chunk(aug_chunk: object) -> None:
    """One line (:class:`RunError`) unless ``aug_chunk`` is a whole number of batches >= 1."""
    if isinstance(aug_chunk, bool) or not isinstance(aug_chunk, int) or aug_chunk < 1:
        raise RunError(f"--aug-chunk must be a whole number of batches >= 1, got {aug_chunk!r}")


def select_device(requested: str | None = None) -> torch.device:
    """``cuda``, then ``mps``, then ``cpu`` (or the requested one, checked)."""
    if requested and requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise RunError(f"--device {requested!r} is not a device (cuda, cuda:1, mps or cpu)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RunError(f"--device {requested}: CUDA is not available here")
        if device.type == "mps" and not _mps_available():
            raise RunError(f"--device {requested}: MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve(
    device: str | torch.device | None = None,
    *,
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    deterministic: bool = False,
    aug_chunk: int = 1,
) -> DeviceSettings:
    """The settings for ``device`` with the module's defaults for every option left ``None``."""
    check_aug_chunk(aug_chunk)
    dev = device if isinstance(device, torch.device) else select_device(device)
    return DeviceSettings(
        device=dev,
        amp=dev.type == "cuda" if amp is None else bool(amp),
        channels_last=dev.type in ("cuda", "cpu") if channels_last is None else bool(channels_last),
        compile=bool(compile),
        deterministic=bool(deterministic),
        aug_chunk=aug_chunk,
    )


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def keep_freed_memory() -> bool:
    """glibc: keep freed heap memory in the process instead of returning it after every batch.

    A CPU training step allocates and frees the same few MB of tensors; with glibc's dynamic
    thresholds the heap is trimmed and faulted in again page by page every batch (500 to 27,000
    minor page faults per step measured here, up to half the input pipeline's time). Blocks up to
    32 MiB then come from the heap, which is trimmed only above 1 GiB free at its top. Process-wide;
    returns False (and changes nothing) where glibc is absent.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        )
    except (OSError, AttributeError):
        return False


def configure_backends(settings: DeviceSettings) -> dict[str, Any]:
    """Set the process-wide backend flags for ``settings``; return them (for the run's manifest)."""
    if settings.device.type == "cpu":
        keep_freed_memory()
    if settings.device.type == "cuda":
        fast = not settings.deterministic
        if settings.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.benchmark = fast
        torch.backends.cudnn.deterministic = settings.deterministic
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.allow_tf32 = fast
    # set for every run, so that a deterministic run does not leave later runs of the process deterministic
    torch.use_deterministic_algorithms(settings.deterministic, warn_only=False)
    return backend_flags(settings.device)


def backend_flags(device: torch.device) -> dict[str, Any]:
    """The flags that decide which kernels run (and so whether a rerun is bit-identical)."""
    flags: dict[str, Any] = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "num_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        flags.update(
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
            cublas_workspace_config=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        )
    return flags


def autocast(settings: DeviceSettings) -> AbstractContextManager[Any]:
    """bf16 autocast on the settings' device when ``amp`` is on; a no-op otherwise."""
    if settings.amp:
        return torch.autocast(device_type=settings.device.type, dtype=torch.bfloat16)
    return nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device: torch.device | str) -> str:
    """``NVIDIA H100 80GB HBM3`` or ``AMD EPYC (2 threads)``: what the run's figures were measured on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{cpu_model()} ({torch.get_num_threads()} threads)"
    return str(device)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    import platform

    return cpu_info().get("model_name") or platform.processor() or "cpu"


# vector extensions that change CPU kernel speed, in the order they are reported
_CPU_ISA = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "asimd", "sve")


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """What tells two CPUs with the same model name apart, from /proc/cpuinfo's first processor.

    Virtual machines often report a generic name (``AMD EPYC``) for different CPU generations,
    whose speeds can differ by 2x (results/cpu-track/README.md, "Reproducing a recorded run").
    ``family``, ``model`` and ``stepping`` (x86: 25/17 is AMD Zen 4), the vector extensions among
    ``avx2``, ``avx512f``, ``avx512_bf16``, ``amx_tile`` (x86), ``asimd`` and ``sve`` (Arm), and
    the cache size tell them apart; the clock is left out (/proc/cpuinfo gives the moment's).
    Empty where there is no /proc/cpuinfo (macOS, Windows); keys absent where the kernel omits them.

    :param cpuinfo: the text to parse instead of reading /proc/cpuinfo.
    """
    text = cpuinfo
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():  # the first processor's block
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    names = {
        "model name": "model_name",
        "cpu family": "family",
        "model": "model",
        "stepping": "stepping",
        "cache size": "cache",
    }
    info: dict[str, Any] = {new: fields[old] for old, new in names.items() if fields.get(old)}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    info["isa"] = [isa for isa in _CPU_ISA if isa in flags]
    return info

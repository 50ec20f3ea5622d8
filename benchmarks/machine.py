"""What the benchmark records say about the machine: its CPU model and load average."""

from __future__ import annotations

import os
import platform


def load_average() -> list[float]:
    """The 1/5/15-minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU model as /proc/cpuinfo names it (else what platform knows)."""
    from cifarbudget.device import cpu_info

    return cpu_info().get("model_name") or platform.processor() or "unknown"

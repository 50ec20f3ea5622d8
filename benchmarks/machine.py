"""What the benchmark records say about the machine: its CPU model and load average."""

from __future__ import annotations

import os

from cifarbudget.device import cpu_model  # re-exported: the name the records give the CPU

__all__ = ["cpu_model", "load_average"]


def load_average() -> list[float]:
    """The 1/5/15-minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []

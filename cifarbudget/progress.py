"""Progress for long work: a live bar on a terminal, a line per epoch everywhere else.

On an interactive terminal (standard error is a TTY) :class:`Progress` draws a tqdm bar with the
rate and ETA. When standard error is a file, a pipe, CI or a sweep worker's log, a bar would
write a carriage-return update per step (megabytes in a long CPU run), so it writes nothing per
step and logs one line per epoch instead (through ``logging.getLogger("cifarbudget")``), with the
same numbers and an ETA. ``enabled=False`` turns both off.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("cifarbudget.progress")


MIN_COLUMNS = 20  # narrower (a pseudo-terminal that reports 0 columns): a line per epoch instead
LABEL_WIDTH = 40


def interactive() -> bool:
    """Whether standard error is a terminal a live bar can redraw, at least :data:`MIN_COLUMNS` wide."""
    try:
        if not sys.stderr.isatty():
            return False
        return os.get_terminal_size(sys.stderr.fileno()).columns >= MIN_COLUMNS
    except (AttributeError, ValueError, OSError):  # replaced or closed stream, no size to read
        return False


def label(text: str, width: int = LABEL_WIDTH) -> str:
    """``text`` within ``width`` characters, cut in the middle with an ellipsis: a run id keeps its
    model and its hash (``airnet-small-synthe…-s8-ba45afb70cb1``), and never looks whole when it is not."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (width - 1 - head) :]


class Progress:
    """``total`` units of work (steps, images), ``done`` of them finished before this started."""

    def __init__(
        self, *, total: int, done: int = 0, unit: str = "step", desc: str = "", enabled: bool = True
    ) -> None:
        self.total, self.done, self.unit, self.desc = total, done, unit, desc
        self.enabled = enabled
        self._start_done, self._start = done, time.perf_counter()
        self._bar: Any = None
        if enabled and interactive():
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=done,
                unit=unit,
                desc=label(desc),
                dynamic_ncols=True,
                leave=True,
                file=sys.stderr,
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def eta_seconds(self) -> float | None:
        """Remaining seconds at the rate measured since this object was made (None before any work)."""
        worked = self.done - self._start_done
        elapsed = time.perf_counter() - self._start
        if worked <= 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / worked

    def epoch_done(self, epoch: int, epochs: int, numbers: dict[str, str]) -> None:
        """Show an epoch's numbers: as the bar's postfix, or as one log line."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(numbers, refresh=False)
            return
        eta = self.eta_seconds()
        text = " ".join(f"{k} {v}" for k, v in numbers.items())
        log.info(
            "%s: epoch %d/%d %s%s",
            self.desc,
            epoch,
            epochs,
            text,
            f" ETA {format_duration(eta)}" if eta else "",
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_duration(seconds: float | None) -> str:
    """``0:03:07`` (or ``?``)."""
    if seconds is None:
        return "?"
    import datetime

    return str(datetime.timedelta(seconds=round(seconds)))


def plural(n: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``, ``0 runs``: a count and its noun (plural by an ``s``)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"

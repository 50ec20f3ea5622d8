"""Progress for long work: a live bar on a terminal, a line per epoch everywhere else.

On an interactive terminal (standard error is a TTY) :class:`Progress` draws a tqdm bar with the
rate and ETA. When standard error is a file, a pipe, CI or a sweep worker's log, a bar would
write a carriage-return update per step (megabytes in a long CPU run), so it writes nothing per
step and logs one line per epoch instead (through ``logging.getLogger("cifarbudget")``), with the
same numbers and an ETA. ``enabled=False`` turns both off.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("cifarbudget.progress")


def interactive() -> bool:
    """Whether standard error is a terminal a live bar can redraw."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


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
                desc=desc[:40],
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

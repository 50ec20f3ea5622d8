"""Progress: a bar only on a terminal wide enough to draw one, labels cut visibly."""

from __future__ import annotations

import io
import os

import pytest

from cifarbudget import progress
from cifarbudget.progress import LABEL_WIDTH, label


def test_a_long_label_is_cut_in_the_middle_with_an_ellipsis() -> None:
    run_id = "airnet-small-synthetic-e2-s8-ba45afb70cb1"  # 41 characters
    cut = label(run_id)
    assert len(cut) == LABEL_WIDTH and "\u2026" in cut
    assert cut.startswith("airnet-small") and cut.endswith("ba45afb70cb1")  # model and hash kept
    assert label("resnet20-synthetic-e1-s0-4e950178f7e4") == "resnet20-synthetic-e1-s0-4e950178f7e4"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2


@pytest.mark.parametrize(("columns", "bar"), [(0, False), (19, False), (80, True)])
def test_a_bar_needs_a_terminal_wide_enough(monkeypatch: pytest.MonkeyPatch, columns: int, bar: bool) -> None:
    """A pseudo-terminal that reports 0 columns (``script -qc``) drew an empty bar and printed
    nothing at all; it gets the per-epoch lines instead."""
    monkeypatch.setattr(progress.sys, "stderr", _Terminal())
    monkeypatch.setattr(progress.os, "get_terminal_size", lambda fd: os.terminal_size((columns, 24)))
    assert progress.interactive() is bar


def test_a_pipe_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert progress.interactive() is False

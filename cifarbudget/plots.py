"""The run's pictures: training curves (accuracy and loss per epoch) and the test confusion matrix.

Every function that draws returns or saves a :class:`matplotlib.figure.Figure` (no pyplot state).
Text from users (class names, run ids, model names, titles) is drawn as it is written: a ``$`` in
a class folder's name is a dollar sign, not the start of a mathtext formula (:data:`LITERAL`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifarbudget.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# text properties of user-supplied text: no mathtext ("cost_$1_$2" raises in mathtext) and no TeX
LITERAL: dict[str, Any] = {"parse_math": False, "usetex": False}


def literal(texts: Iterable[Any]) -> None:
    """Draw the matplotlib ``Text`` artists ``texts`` as written (see :data:`LITERAL`)."""
    for text in texts:
        text.set_parse_math(False)
        text.set_usetex(False)


def whole_epoch_ticks(ax: Any) -> None:
    """Integer epoch ticks on ``ax``'s x axis; one or two epochs get a tick each, not 0.96 ... 1.04."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = (round(v) for v in ax.get_xlim())
    if high - low < 2:
        ax.set_xlim(low - 0.5, high + 0.5)
        ax.set_xticks(range(low, high + 1))


def accuracy_title(test_acc: float, tta: str | None) -> str:
    """``test accuracy 0.8350 (TTA flip)`` or ``test accuracy 0.8000 (no TTA)``: which accuracy it is."""
    policy = f"TTA {tta}" if tta and tta != "none" else "no TTA"
    return f"test accuracy {test_acc:.4f} ({policy})"


def figure_png(fig: Any) -> bytes:
    """``fig`` as PNG bytes (110 dpi, cropped to what is drawn)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def curves_figure(history: list[dict[str, Any]], title: str = "") -> Figure:
    """Accuracy and loss per epoch, train and validation (without TTA), side by side."""
    from matplotlib.figure import Figure

    rows = [h for h in history if h.get("train_acc") is not None]
    epochs = [h["epoch"] for h in rows]
    fig = Figure(figsize=(10, 3.8))
    ax_acc, ax_loss = fig.subplots(1, 2)
    ax_acc.plot(epochs, [h["train_acc"] for h in rows], label="train", marker="." if len(rows) < 30 else None)
    ax_loss.plot(
        epochs, [h["train_loss"] for h in rows], label="train", marker="." if len(rows) < 30 else None
    )
    val = [h for h in rows if h.get("val_acc") is not None]
    if val:
        ax_acc.plot(
            [h["epoch"] for h in val],
            [h["val_acc"] for h in val],
            label="validation (no TTA)",
            marker="." if len(val) < 30 else None,
        )
        ax_loss.plot(
            [h["epoch"] for h in val],
            [h["val_loss"] for h in val],
            label="validation (no TTA)",
            marker="." if len(val) < 30 else None,
        )
    for ax, name in ((ax_acc, "accuracy (no TTA)"), (ax_loss, "loss")):
        whole_epoch_ticks(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9, **LITERAL)
    return fig


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Write :func:`curves_figure` to ``path`` as a PNG (atomically)."""
    atomic_write_bytes(path, figure_png(curves_figure(history, title)))


MAX_GRID_CLASSES = 20  # beyond this a confusion grid is unreadable: the most-confused pairs instead
TOP_PAIRS = 25


def most_confused_pairs(
    matrix: list[list[int]], classes: list[str], k: int = TOP_PAIRS
) -> list[tuple[str, str, int, float]]:
    """The ``k`` largest off-diagonal cells: (true class, predicted class, count, share of the true class)."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    totals = np.maximum(m.sum(axis=1), 1)
    off = m.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), m.shape[1])
        if off[i, j] <= 0:
            break
        pairs.append((classes[i], classes[j], int(off[i, j]), float(off[i, j] / totals[i])))
    return pairs


def confusion_figure(
    matrix: list[list[int]],
    classes: list[str],
    title: str = "",
    *,
    test_acc: float | None = None,
    tta: str | None = None,
) -> Figure:
    """Row-normalised confusion matrix with counts (rows: true class, columns: predicted); with more
    than 20 classes, the most-confused pairs as a bar chart instead (a 100 x 100 grid is unreadable).

    With ``test_acc`` the title gets a last line saying which accuracy it is and with which TTA
    policy the matrix was computed (``tta``: the policy, ``None`` or ``"none"`` for no TTA):
    ``test accuracy 0.8350 (TTA flip)``.
    """
    if test_acc is not None:
        title = "\n".join(t for t in (title, accuracy_title(test_acc, tta)) if t)
    if len(classes) > MAX_GRID_CLASSES:
        return _confused_pairs_figure(matrix, classes, title)
    import numpy as np
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=float)
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.5, 0.5 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(int(m[i, j])),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8, **LITERAL)
    ax.set_yticks(range(n), classes, fontsize=8, **LITERAL)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9, **LITERAL)
    return fig


def plot_confusion(
    matrix: list[list[int]],
    classes: list[str],
    path: Path,
    title: str = "",
    *,
    test_acc: float | None = None,
    tta: str | None = None,
) -> None:
    """Write :func:`confusion_figure` to ``path`` as a PNG (atomically)."""
    fig = confusion_figure(matrix, classes, title, test_acc=test_acc, tta=tta)
    atomic_write_bytes(path, figure_png(fig))


def _confused_pairs_figure(matrix: list[list[int]], classes: list[str], title: str) -> Figure:
    import numpy as np
    from matplotlib.figure import Figure

    pairs = most_confused_pairs(matrix, classes)
    m = np.asarray(matrix, dtype=float)
    accuracy = np.diag(m) / np.maximum(m.sum(axis=1), 1)
    fig = Figure(figsize=(12, 0.3 * max(len(pairs), 10) + 1.5))
    ax_pairs, ax_classes = fig.subplots(1, 2)
    labels = [f"{t} -> {p}" for t, p, _, _ in pairs][::-1]
    # bars at positions, named by fixed tick labels: class names as text, not as categories
    ax_pairs.barh(range(len(labels)), [share for *_, share in pairs][::-1], color="#cc0000")
    ax_pairs.set_yticks(range(len(labels)), labels, **LITERAL)
    ax_pairs.set_xlabel("share of the true class predicted as the other")
    ax_pairs.tick_params(axis="y", labelsize=7)
    ax_pairs.set_title(f"the {len(pairs)} most-confused pairs (true -> predicted)", fontsize=9)
    worst = np.argsort(accuracy, kind="stable")[: min(len(pairs), 25)]
    ax_classes.barh(range(len(worst)), accuracy[worst][::-1], color="#3465a4")
    ax_classes.set_yticks(range(len(worst)), [classes[i] for i in worst][::-1], **LITERAL)
    ax_classes.set_xlim(0, 1)
    ax_classes.set_xlabel("per-class accuracy")
    ax_classes.tick_params(axis="y", labelsize=7)
    ax_classes.set_title(f"the {len(worst)} least accurate of {len(classes)} classes", fontsize=9)
    fig.suptitle(title, fontsize=9, **LITERAL)
    fig.tight_layout()
    return fig

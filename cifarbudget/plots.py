"""The run's pictures: training curves (accuracy and loss per epoch) and the test confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarbudget.io import atomic_write_bytes


def _figure_bytes(fig: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Accuracy and loss per epoch, train and validation, side by side (as in the paper's figures)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [h for h in history if h.get("train_acc") is not None]
    epochs = [h["epoch"] for h in rows]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_acc.plot(epochs, [h["train_acc"] for h in rows], label="train", marker="." if len(rows) < 30 else None)
    ax_loss.plot(
        epochs, [h["train_loss"] for h in rows], label="train", marker="." if len(rows) < 30 else None
    )
    val = [h for h in rows if h.get("val_acc") is not None]
    if val:
        ax_acc.plot(
            [h["epoch"] for h in val],
            [h["val_acc"] for h in val],
            label="validation",
            marker="." if len(val) < 30 else None,
        )
        ax_loss.plot(
            [h["epoch"] for h in val],
            [h["val_loss"] for h in val],
            label="validation",
            marker="." if len(val) < 30 else None,
        )
    for ax, name in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    atomic_write_bytes(path, _figure_bytes(fig))
    plt.close(fig)


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


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts (rows: true class, columns: predicted); with more
    than 20 classes, the most-confused pairs as a bar chart instead (a 100 x 100 grid is unreadable)."""
    if len(classes) > MAX_GRID_CLASSES:
        _plot_confused_pairs(matrix, classes, path, title)
        return
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.5, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
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
        ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    atomic_write_bytes(path, _figure_bytes(fig))
    plt.close(fig)


def _plot_confused_pairs(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = most_confused_pairs(matrix, classes)
    m = np.asarray(matrix, dtype=float)
    accuracy = np.diag(m) / np.maximum(m.sum(axis=1), 1)
    fig, (ax_pairs, ax_classes) = plt.subplots(1, 2, figsize=(12, 0.3 * max(len(pairs), 10) + 1.5))
    labels = [f"{t} -> {p}" for t, p, _, _ in pairs][::-1]
    ax_pairs.barh(labels, [share for *_, share in pairs][::-1], color="#cc0000")
    ax_pairs.set_xlabel("share of the true class predicted as the other")
    ax_pairs.tick_params(axis="y", labelsize=7)
    ax_pairs.set_title(f"the {len(pairs)} most-confused pairs (true -> predicted)", fontsize=9)
    worst = np.argsort(accuracy, kind="stable")[: min(len(pairs), 25)]
    ax_classes.barh([classes[i] for i in worst][::-1], accuracy[worst][::-1], color="#3465a4")
    ax_classes.set_xlim(0, 1)
    ax_classes.set_xlabel("per-class accuracy")
    ax_classes.tick_params(axis="y", labelsize=7)
    ax_classes.set_title(f"the {len(worst)} least accurate of {len(classes)} classes", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write_bytes(path, _figure_bytes(fig))
    plt.close(fig)

"""Calibration of a classifier's confidence: ECE, NLL, temperature scaling and the reliability diagram.

Everything follows Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks"
(ICML 2017, arXiv:1706.04599):

- the **confidence** of a prediction is its maximum softmax probability; predictions are grouped
  into ``n_bins`` equal-width confidence bins ``((b-1)/M, b/M]`` (the paper's ``I_m``, M = 15 by
  default, as in the paper's tables);
- **ECE** (expected calibration error) is ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``: the
  sample-weighted mean gap between each bin's accuracy and its mean confidence (0 = calibrated);
- **NLL** is the mean negative log-likelihood of the true labels (cross-entropy, natural log);
- **temperature scaling** divides the logits by one scalar ``T > 0`` fitted to minimise the NLL
  on a held-out (validation) split; it never changes a prediction, only its confidence.

Inputs are numpy arrays or torch tensors; the functions compute in float64 on the CPU. This module
needs numpy and torch only; :func:`reliability_diagram` imports matplotlib when called and returns a
:class:`matplotlib.figure.Figure` (no pyplot state: save it with ``fig.savefig``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cifarbudget.errors import RunError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_BINS = 15
# the temperature search interval (log T in [-LOG_T_BOUND, LOG_T_BOUND], i.e. T in [0.01, 100])
LOG_T_BOUND = math.log(100.0)
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of equal-width confidence bins (what the reliability diagram draws)."""

    edges: np.ndarray  # float64 (n_bins + 1,): 0, 1/M, ..., 1
    counts: np.ndarray  # int64 (n_bins,): predictions per bin
    accuracy: np.ndarray  # float64 (n_bins,): fraction correct per bin (nan for empty bins)
    confidence: np.ndarray  # float64 (n_bins,): mean confidence per bin (nan for empty bins)

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON-ready lists (``None`` for the accuracy and confidence of empty bins), e.g. for result.json."""

        def values(a: np.ndarray) -> list[float | None]:
            return [None if math.isnan(v) else float(v) for v in a.tolist()]

        return {
            "counts": [int(c) for c in self.counts],
            "accuracy": values(self.accuracy),
            "confidence": values(self.confidence),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationBins:
        """The inverse of :meth:`to_dict`: draw a stored run's diagram without its logits."""
        counts = np.asarray(data["counts"], dtype=np.int64)
        n = len(counts)
        if counts.ndim != 1 or not n or len(data["accuracy"]) != n or len(data["confidence"]) != n:
            raise RunError("calibration bins need counts, accuracy and confidence lists of one length")

        def values(key: str) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in data[key]], dtype=np.float64)

        return cls(np.linspace(0.0, 1.0, n + 1), counts, values("accuracy"), values("confidence"))

    @property
    def ece(self) -> float:
        """``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over the non-empty bins."""
        n = int(self.counts.sum())
        full = self.counts > 0
        if not n:
            return float("nan")
        gaps = np.abs(self.accuracy[full] - self.confidence[full])
        return float((self.counts[full] / n * gaps).sum())


def _as_float64(values: Any, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        raise RunError(
            f"{what} must be a non-empty (N, C) array with C >= 2 classes, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise RunError(f"{what} hold NaN or infinite values")
    return array


def _as_labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise RunError(f"labels must be a 1-D integer array, got {array.dtype} {array.shape}")
    if len(array) != n:
        raise RunError(f"{len(array)} labels for {n} predictions")
    if n and (array.min() < 0 or array.max() >= n_classes):
        raise RunError(f"labels must lie in 0..{n_classes - 1}")
    return array.astype(np.int64)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _looks_like_probs(values: np.ndarray) -> bool:
    return bool(
        (values >= 0).all() and (values <= 1).all() and np.allclose(values.sum(axis=1), 1.0, atol=1e-4)
    )


def to_probs(probs_or_logits: Any, *, from_logits: bool | None = None) -> np.ndarray:
    """Float64 probabilities ``(N, C)``: the softmax of logits, or probabilities as given.

    ``from_logits=None`` decides by the values: rows of numbers in [0, 1] that sum to 1 (within
    1e-4) are probabilities, anything else is logits. Pass ``True``/``False`` to force it.
    """
    values = _as_float64(probs_or_logits, "probabilities or logits")
    if from_logits is None:
        from_logits = not _looks_like_probs(values)
    if from_logits:
        return np.exp(_log_softmax(values))
    if not _looks_like_probs(values):
        raise RunError("probabilities must lie in [0, 1] and each row must sum to 1")
    return values


def calibration_bins(
    probs_or_logits: Any, labels: Any, n_bins: int = DEFAULT_BINS, *, from_logits: bool | None = None
) -> CalibrationBins:
    """Counts, accuracy and mean confidence of ``n_bins`` equal-width bins ``((b-1)/M, b/M]``."""
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise RunError(f"n_bins must be a positive integer, got {n_bins!r}")
    probs = to_probs(probs_or_logits, from_logits=from_logits)
    y = _as_labels(labels, probs.shape[0], probs.shape[1])
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds the confidences in (edges[b], edges[b + 1]]: count the inner edges strictly below
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(which, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / counts
    return CalibrationBins(edges, counts, accuracy, mean_conf)


def expected_calibration_error(
    probs_or_logits: Any, labels: Any, n_bins: int = DEFAULT_BINS, *, from_logits: bool | None = None
) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (Guo et al. 2017, eq. 3), in [0, 1].

    ``probs_or_logits`` is ``(N, C)``: probabilities (rows in [0, 1] summing to 1) or logits (see
    :func:`to_probs`); ``labels`` the ``(N,)`` true class indices.
    """
    return calibration_bins(probs_or_logits, labels, n_bins, from_logits=from_logits).ece


def nll(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)`` (nats)."""
    z = _as_float64(logits, "logits")
    y = _as_labels(labels, z.shape[0], z.shape[1])
    logp = _log_softmax(z / _check_temperature(temperature))
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(val_logits: Any, val_labels: Any, *, tol: float = 1e-6) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(val_logits / T)`` (Guo et al. 2017, sec. 4.2).

    Method: golden-section search over ``log T`` in ``[log 0.01, log 100]`` to a tolerance of
    ``tol`` in ``log T``. The NLL of ``softmax(beta * z)`` is convex in ``beta = 1/T`` (a
    log-sum-exp minus a linear term), so as a function of ``log T`` it has one minimum and the
    search cannot stop at a local one; unlike gradient descent (the paper used LBFGS on T) it needs
    no step size and no positivity constraint. Where the optimum lies outside the interval (e.g.
    a validation split the model separates perfectly, whose NLL keeps falling as T -> 0) the
    bound is returned. The result never has a higher validation NLL than ``T = 1``: if it did
    (it cannot, up to rounding) 1.0 is returned.
    """
    z = _as_float64(val_logits, "validation logits")
    y = _as_labels(val_labels, z.shape[0], z.shape[1])
    rows = np.arange(len(y))
    true_logit = z[rows, y]

    def objective(log_t: float) -> float:
        scaled = z * math.exp(-log_t)
        top = scaled.max(axis=1)
        lse = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
        return float((lse - true_logit * math.exp(-log_t)).mean())

    lo, hi = -LOG_T_BOUND, LOG_T_BOUND
    a = hi - _GOLDEN * (hi - lo)
    b = lo + _GOLDEN * (hi - lo)
    fa, fb = objective(a), objective(b)
    while hi - lo > tol:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = objective(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = objective(b)
    # the interval ends are candidates too (the optimum may lie at a bound)
    candidates = [
        (fa, a),
        (fb, b),
        (objective(-LOG_T_BOUND), -LOG_T_BOUND),
        (objective(LOG_T_BOUND), LOG_T_BOUND),
    ]
    best_f, best_log_t = min(candidates)
    if best_f > objective(0.0):
        return 1.0
    return math.exp(best_log_t)


def calibration_metrics(
    logits: Any, labels: Any, temperature: float | None = None, *, n_bins: int = DEFAULT_BINS
) -> dict[str, float]:
    """``ece`` and ``nll`` of ``logits``; with a ``temperature``, also ``ece_ts``, ``nll_ts`` and it.

    Typical use: fit the temperature on the validation logits, then report both splits::

        t = fit_temperature(val_logits, val_labels)
        val = calibration_metrics(val_logits, val_labels, t)
        test = calibration_metrics(test_logits, test_labels, t)
    """
    out = {
        "ece": expected_calibration_error(logits, labels, n_bins, from_logits=True),
        "nll": nll(logits, labels),
    }
    if temperature is not None:
        z = _as_float64(logits, "logits") / _check_temperature(temperature)
        out["ece_ts"] = expected_calibration_error(z, labels, n_bins, from_logits=True)
        out["nll_ts"] = nll(z, labels)
        out["temperature"] = float(temperature)
    return out


def _check_temperature(temperature: Any) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(temperature, bool) or not value > 0 or not math.isfinite(value):
        raise RunError(f"the temperature must be a positive number, got {temperature!r}")
    return value


def reliability_diagram(
    probs: Any,
    labels: Any,
    n_bins: int = DEFAULT_BINS,
    *,
    title: str = "",
    from_logits: bool | None = None,
) -> Figure:
    """The reliability diagram of Guo et al. (2017, fig. 1): accuracy per confidence bin.

    Bars show each bin's accuracy and a black mark its mean confidence; the hatched outline between
    the two is the bin's gap, red where the model is overconfident (confidence above accuracy) and
    green where it is underconfident (accuracy above confidence); the dashed diagonal is perfect
    calibration; a lower panel shows how many predictions fall in each bin. The ECE is in the
    legend. Returns a :class:`matplotlib.figure.Figure` (no pyplot state).
    """
    return plot_reliability(calibration_bins(probs, labels, n_bins, from_logits=from_logits), title=title)


OVERCONFIDENT = "#b22222"
UNDERCONFIDENT = "#2e7d32"


def plot_reliability(bins: CalibrationBins, *, title: str = "") -> Figure:
    """The reliability diagram of precomputed bins (e.g. ``CalibrationBins.from_dict`` of a record)."""
    from matplotlib.figure import Figure

    width = 1.0 / len(bins.counts)
    centers = bins.edges[:-1] + width / 2
    full = bins.counts > 0
    fig = Figure(figsize=(4.6, 5.2), layout="constrained")
    ax, ax_count = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    acc = np.where(full, bins.accuracy, 0.0)
    conf = np.where(full, bins.confidence, 0.0)
    ax.bar(centers, acc, width=width, edgecolor="#1f3b73", color="#4c72b0", label="accuracy")
    # the gap: an outline from the bin's mean confidence to its accuracy, on top of the accuracy bar,
    # coloured by its direction (an underconfident bin's gap lies inside its bar, below the top)
    for side, color, hatch, label in (
        (conf > acc, OVERCONFIDENT, "//", "overconfident: confidence above accuracy"),
        (acc > conf, UNDERCONFIDENT, "\\\\", "underconfident: accuracy above confidence"),
    ):
        shown = full & side
        if shown.any():
            ax.bar(
                centers[shown],
                np.abs(conf - acc)[shown],
                bottom=np.minimum(acc, conf)[shown],
                width=width,
                fill=False,
                edgecolor=color,
                hatch=hatch,
                linewidth=1.2,
                zorder=3,
                label=label,
            )
    ax.plot(
        centers[full],
        conf[full],
        linestyle="none",
        marker="_",
        markersize=14,
        markeredgewidth=2,
        color="black",
        zorder=4,
        label="mean confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=7, title=f"ECE {100 * bins.ece:.2f}%", title_fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9, parse_math=False, usetex=False)
    ax_count.bar(centers, bins.counts, width=width, color="#8c8c8c", edgecolor="#4d4d4d")
    ax_count.set_xlabel("confidence (max softmax probability)")
    ax_count.set_ylabel("count")
    ax_count.grid(alpha=0.3)
    return fig

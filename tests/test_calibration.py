"""Calibration: ECE on hand-made probabilities, NLL, temperature scaling, the reliability diagram."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

from cifarbudget.calibration import (
    CalibrationBins,
    calibration_bins,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    nll,
    plot_reliability,
    reliability_diagram,
    to_probs,
)
from cifarbudget.errors import RunError

# 6 predictions, 3 classes, 5 bins (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1]:
#   bin (.8,1]:  conf .90 right, .85 wrong -> acc .5, conf .875, gap .375
#   bin (.6,.8]: conf .70 right, .65 wrong -> acc .5, conf .675, gap .175
#   bin (.4,.6]: conf .50 right, .45 wrong -> acc .5, conf .475, gap .025
# ECE = 2/6 * (.375 + .175 + .025) = .575 / 3
HAND_PROBS = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.85, 0.10, 0.05],
        [0.10, 0.70, 0.20],
        [0.30, 0.65, 0.05],
        [0.50, 0.30, 0.20],
        [0.45, 0.35, 0.20],
    ]
)
HAND_LABELS = np.array([0, 1, 1, 0, 0, 2])
HAND_ECE = 0.575 / 3


def test_ece_on_hand_made_probabilities() -> None:
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=5) == pytest.approx(HAND_ECE, abs=1e-12)
    bins = calibration_bins(HAND_PROBS, HAND_LABELS, n_bins=5)
    assert bins.counts.tolist() == [0, 0, 2, 2, 2]
    np.testing.assert_allclose(bins.accuracy[2:], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(bins.confidence[2:], [0.475, 0.675, 0.875])
    # torch tensors give the same number
    assert expected_calibration_error(
        torch.tensor(HAND_PROBS, dtype=torch.float32), torch.tensor(HAND_LABELS), n_bins=5
    ) == pytest.approx(HAND_ECE, abs=1e-6)


def test_ece_with_the_default_15_bins_by_hand() -> None:
    # bins of width 1/15 put each of the six confidences in a bin of its own: .90 in (13/15, 14/15],
    # .85 in (12/15, 13/15], .70 in (10/15, 11/15], .65 in (9/15, 10/15], .50 in (7/15, 8/15],
    # .45 in (6/15, 7/15]; each bin's gap is |correct - confidence|
    gaps = [1 - 0.90, 0.85, 1 - 0.70, 0.65, 1 - 0.50, 0.45]
    assert sum(gaps) / 6 == pytest.approx(0.475)
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS) == pytest.approx(0.475, abs=1e-12)
    assert calibration_bins(HAND_PROBS, HAND_LABELS).counts.tolist() == [0] * 6 + [1, 1, 0, 1, 1, 0, 1, 1, 0]


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin() -> None:
    # bins are ((b-1)/M, b/M]: a confidence of exactly 0.6 belongs to (0.4, 0.6]
    bins = calibration_bins(np.array([[0.6, 0.4], [0.8, 0.2]]), np.array([0, 1]), n_bins=5)
    assert bins.counts.tolist() == [0, 0, 1, 1, 0]


def test_perfectly_calibrated_predictions_have_zero_ece() -> None:
    # 10 predictions at confidence .8 with 8 right, 5 at .6 with 3 right
    probs = np.array([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 5)
    labels = np.array([0] * 8 + [1] * 2 + [1] * 3 + [0] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.0, abs=1e-12)


def _reference_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """ECE written out as in the paper, one bin at a time."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lower, upper = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(len(conf)) if lower < conf[i] <= upper]
        if members:
            acc = np.mean([pred[i] == labels[i] for i in members])
            total += len(members) / len(conf) * abs(acc - np.mean(conf[members]))
    return total


def test_ece_agrees_with_a_per_bin_loop_and_accepts_logits() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(500, 10))
    labels = rng.integers(0, 10, size=500)
    probs = to_probs(logits)
    for n_bins in (1, 7, 15):
        expected = _reference_ece(probs, labels, n_bins)
        assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(expected, abs=1e-12)
        assert expected_calibration_error(logits, labels, n_bins) == pytest.approx(expected, abs=1e-12)


def test_nll_by_hand() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0])
    p0 = math.exp(2) / (math.exp(2) + 1)
    p1 = 1 / (1 + math.e)
    assert nll(logits, labels) == pytest.approx(-(math.log(p0) + math.log(p1)) / 2, abs=1e-12)
    assert nll(logits, labels, temperature=2.0) == pytest.approx(nll(logits / 2, labels), abs=1e-12)
    assert nll(torch.tensor(logits), torch.tensor(labels)) == pytest.approx(
        torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item(), abs=1e-12
    )


def _sampled(n: int, t_true: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``t_true * z`` with labels drawn from ``softmax(z)``: the right temperature is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, 10))
    probs = to_probs(z)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return t_true * z, labels


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_temperature_scaling_recovers_the_temperature(t_true: float) -> None:
    logits, labels = _sampled(20_000, t_true, seed=1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(t_true, rel=0.02)
    # it is the minimum of the validation NLL, and never worse than T = 1
    assert nll(logits, labels, t) <= nll(logits, labels)
    assert nll(logits, labels, t) <= nll(logits, labels, t * 1.01)
    assert nll(logits, labels, t) <= nll(logits, labels, t / 1.01)
    # on a fresh sample of the same model it improves calibration
    test_logits, test_labels = _sampled(20_000, t_true, seed=2)
    metrics = calibration_metrics(test_logits, test_labels, t)
    assert set(metrics) == {"ece", "nll", "ece_ts", "nll_ts", "temperature"}
    assert metrics["nll_ts"] < metrics["nll"]
    assert metrics["ece_ts"] < metrics["ece"]
    assert metrics["ece_ts"] < 0.02


def test_temperature_of_a_calibrated_model_is_about_one_and_never_raises_nll() -> None:
    logits, labels = _sampled(5_000, 1.0, seed=3)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(1.0, rel=0.05)
    assert nll(logits, labels, t) <= nll(logits, labels)
    # a validation split the model separates perfectly: NLL falls as T -> 0, the bound is returned
    separable = np.array([[5.0, 0.0], [0.0, 5.0]])
    t_sep = fit_temperature(separable, np.array([0, 1]))
    assert t_sep == pytest.approx(0.01, rel=1e-3)
    assert nll(separable, np.array([0, 1]), t_sep) < nll(separable, np.array([0, 1]))


def test_calibration_metrics_without_temperature() -> None:
    logits = np.log(HAND_PROBS)
    metrics = calibration_metrics(logits, HAND_LABELS, n_bins=5)
    assert set(metrics) == {"ece", "nll"}
    assert metrics["ece"] == pytest.approx(HAND_ECE, abs=1e-12)
    assert metrics["nll"] == pytest.approx(-np.log(HAND_PROBS[np.arange(6), HAND_LABELS]).mean(), abs=1e-12)


def test_reliability_diagram_draws_the_bins() -> None:
    from matplotlib.figure import Figure
    from PIL import Image

    fig = reliability_diagram(HAND_PROBS, HAND_LABELS, n_bins=5, title="hand-made")
    assert isinstance(fig, Figure)
    bars = fig.axes[0].patches[:5]  # the accuracy bars come first
    assert [round(b.get_height(), 6) for b in bars] == [0, 0, 0.5, 0.5, 0.5]
    counts = [b.get_height() for b in fig.axes[1].patches]
    assert counts == [0, 0, 2, 2, 2]
    # the bins survive a JSON round trip (empty bins as null) and draw the same bars
    stored = json.loads(json.dumps(calibration_bins(HAND_PROBS, HAND_LABELS, n_bins=5).to_dict()))
    assert stored == {
        "counts": [0, 0, 2, 2, 2],
        "accuracy": [None, None, 0.5, 0.5, 0.5],
        "confidence": [None, None, pytest.approx(0.475), pytest.approx(0.675), pytest.approx(0.875)],
    }
    redrawn = plot_reliability(CalibrationBins.from_dict(stored))
    assert [b.get_height() for b in redrawn.axes[0].patches[:5]] == [b.get_height() for b in bars]
    assert CalibrationBins.from_dict(stored).ece == pytest.approx(HAND_ECE, abs=1e-12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 200


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=0), "n_bins"),
        (
            lambda: expected_calibration_error(HAND_PROBS, np.array([0, 1, 2, 3, 0, 0])),
            "labels must lie in 0..2",
        ),
        (lambda: expected_calibration_error(HAND_PROBS, HAND_LABELS[:3]), "3 labels for 6"),
        (lambda: expected_calibration_error(HAND_PROBS[0], HAND_LABELS), "(N, C)"),
        (lambda: nll(HAND_PROBS, HAND_LABELS, temperature=-1.0), "positive"),
        (lambda: to_probs(HAND_PROBS * 2, from_logits=False), "sum to 1"),
        (lambda: nll(np.array([[np.nan, 0.0]]), np.array([0])), "NaN"),
    ],
)
def test_bad_inputs_are_one_line_run_errors(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_recorded_reliability_bins_read_the_logits_as_logits() -> None:
    """One-hot logits look like probabilities; the run's record must still treat them as logits,
    so the reliability diagram's ECE is the recorded test ECE."""
    from cifarbudget.data.core import DeviceSplit, Split
    from cifarbudget.runner import calibration_record

    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 10, 200))
    logits = torch.eye(10)[torch.from_numpy(rng.integers(0, 10, 200))]  # rows of 0s and one 1
    split = Split(torch.zeros(200, 3, 1, 1, dtype=torch.uint8), labels, [str(c) for c in range(10)])
    test = DeviceSplit.from_split(split, torch.device("cpu"), [0.5] * 3, [0.25] * 3)
    record = calibration_record(None, test, {"logits": logits}, test)
    bins = record["test_reliability"]
    counts, acc, conf = (np.asarray(bins[k], dtype=float) for k in ("counts", "accuracy", "confidence"))
    filled = counts > 0
    ece = float((counts[filled] / counts.sum() * np.abs(acc[filled] - conf[filled])).sum())
    assert ece == pytest.approx(record["test"]["ece"])


def test_an_underconfident_bin_reads_as_underconfident() -> None:
    """The gap bar was drawn from the accuracy down to the confidence inside the accuracy bar, so a
    bin at accuracy 0.99 and confidence 0.83 looked like one at accuracy 0.83 and confidence 0.99."""
    bins = CalibrationBins.from_dict(
        {"counts": [0, 10, 20], "accuracy": [None, 0.5, 0.99], "confidence": [None, 0.6, 0.83]}
    )
    ax = plot_reliability(bins).axes[0]
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert legend == {
        "accuracy",
        "overconfident: confidence above accuracy",
        "underconfident: accuracy above confidence",
        "mean confidence",
        "perfect calibration",
    }
    accuracy, over, under = ax.containers
    assert [round(b.get_height(), 6) for b in accuracy] == [0, 0.5, 0.99]
    # each gap spans confidence..accuracy, outlined on top of its bar, coloured by its direction
    (o,) = over
    (u,) = under
    assert (round(o.get_y(), 6), round(o.get_y() + o.get_height(), 6)) == (0.5, 0.6)
    assert (round(u.get_y(), 6), round(u.get_y() + u.get_height(), 6)) == (0.83, 0.99)
    assert not o.get_fill() and not u.get_fill() and o.get_zorder() > accuracy[2].get_zorder()
    assert o.get_edgecolor() != u.get_edgecolor()
    (marks,) = [line for line in ax.lines if line.get_label() == "mean confidence"]
    assert list(marks.get_ydata()) == pytest.approx([0.6, 0.83])

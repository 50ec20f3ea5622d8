"""One self-contained HTML page about a set of runs: leaderboard, plots, ablation and provenance.

The page loads nothing: the CSS is inline and every plot is a PNG data URI drawn with matplotlib
(``Figure`` objects, no pyplot state, Agg), so it can be mailed, archived or opened offline.
:func:`write_report` is what ``cifarbudget report`` calls.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cifarbudget import leaderboard as lb
from cifarbudget.errors import CifarBudgetError
from cifarbudget.io import atomic_write_text

DEFAULT_BUDGET = 5_000_000
MAX_TABLE_ROWS = 100
# Legend labels longer than this go below the curves, wrapped at LEGEND_WRAP_CHARS.
LEGEND_ON_PLOT_CHARS = 70
LEGEND_WRAP_CHARS = 120
GRADCAM_SEED = 0  # the random sample of test images the Grad-CAM section searches for mistakes

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1d2330; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #d9dde5; padding-bottom: 0.2em; }
p.sub { color: #5b6475; margin-top: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #e6e9ef; text-align: right; white-space: nowrap; }
th { background: #f3f5f9; position: sticky; top: 0; }
td:nth-child(-n+8), th:nth-child(-n+8) { text-align: left; }
table.notranked td, table.notranked th { text-align: left; }
tbody tr:first-child td { font-weight: 600; }
table.notranked tbody tr:first-child td, table.ablation tbody tr:first-child td { font-weight: normal; }
img { max-width: 100%; height: auto; border: 1px solid #e6e9ef; margin: 0.4em 0; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.note { color: #5b6475; font-size: 0.9em; }
ul.warnings li { color: #8a4b00; font-family: ui-monospace, monospace; font-size: 0.85em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.9em; }
dt { font-weight: 600; } dd { margin: 0; font-family: ui-monospace, monospace; }
"""


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote and read."""

    path: Path | None
    n_runs: int
    n_ranked_configs: int
    warnings: list[str] = field(default_factory=list)


# --- figures -------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_data_uri(fig_or_png: Any) -> str:
    """A matplotlib figure (or PNG bytes) as a ``data:image/png;base64,...`` URI."""
    if isinstance(fig_or_png, bytes):
        png = fig_or_png
    else:
        buffer = io.BytesIO()
        fig_or_png.savefig(buffer, format="png", dpi=100)
        png = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def row_test_accuracy(frame: pd.DataFrame, stat: str = "_mean") -> pd.Series:
    """Each row's test accuracy with its own TTA policy (``test_acc_tta``; ``test_acc`` for a row
    without TTA or without a TTA figure): what the configuration scores as it is ranked. ``stat``:
    ``"_mean"`` or ``"_ci95"`` for a board, ``""`` for the rows of runs."""
    plain = pd.to_numeric(frame[f"test_acc{stat}"], errors="coerce")
    if f"test_acc_tta{stat}" not in frame.columns:
        return plain
    # the TTA figure where the row has a TTA mean (so that a mean and its CI bar come from one metric)
    mean = pd.to_numeric(frame["test_acc_tta_mean" if stat else "test_acc_tta"], errors="coerce")
    with_tta = (frame["tta"].astype(str) != "none") & mean.notna()
    return pd.to_numeric(frame[f"test_acc_tta{stat}"], errors="coerce").where(with_tta, plain)


def accuracy_vs_params(board: pd.DataFrame, runs: pd.DataFrame, budget: int) -> Any:
    """Mean test accuracy (each configuration with its own TTA policy, 95% CI bars) vs. parameters,
    the Pareto front (chosen on validation, per dataset, drawn at test), over-budget runs, the budget."""
    from cifarbudget.plots import LITERAL, literal

    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    costs: list[float] = [float(budget)]
    y = row_test_accuracy(board) if not board.empty else pd.Series(dtype=float)
    if not board.empty:
        x = board["params"].astype(float)
        err = row_test_accuracy(board, "_ci95").fillna(0.0)
        ax.errorbar(
            x,
            y,
            yerr=err,
            fmt="o",
            ms=5,
            color="#3465a4",
            ecolor="#9fb6d6",
            capsize=3,
            label="configuration (mean test accuracy, 95% CI)",
        )
        single = pd.to_numeric(board["n"], errors="coerce") == 1
        if single.any():  # no spread to draw: hollow, so that no bar does not read as certainty
            ax.plot(x[single], y[single], "o", ms=5, mfc="white", mec="#3465a4", label="one seed (no CI)")
        front = lb.pareto(board, by="params").sort_values("params")
        ax.step(
            front["params"],
            y[front.index],
            where="post",
            color="#cc0000",
            lw=1.4,
            label="Pareto front (chosen on validation)",
        )
        ax.plot(front["params"], y[front.index], "o", mfc="none", mec="#cc0000", ms=9)
        # alternate above/below: neighbours collide
        for i, (index, row) in enumerate(board.head(8).iterrows()):
            ax.annotate(
                f"#{row['rank']} {row['model']}",
                (row["params"], y[index]),
                textcoords="offset points",
                xytext=(5, 4 if i % 2 == 0 else -11),
                fontsize=7,
                color="#333",
                **LITERAL,
            )
        costs.extend(x.tolist())
    over = runs[~runs["within_budget"].astype(bool) & runs["test_acc"].notna()].drop_duplicates("run_id")
    over_acc = row_test_accuracy(over, "")
    if len(over):
        ax.plot(
            over["params"].astype(float),
            over_acc.astype(float),
            "x",
            color="#888",
            label="out-of-budget run (not ranked)",
        )
        costs.extend(over["params"].astype(float).tolist())
    ax.axvline(budget, color="#4e9a06", ls="--", lw=1.2, label=f"budget {budget:,}")
    accs = [float(v) for v in (*y.dropna(), *over_acc.dropna())]
    if accs:  # accuracy stays in [0, 1]
        lo, hi = min(accs), max(accs)
        if not board.empty:  # the error bars too, unless a few huge ones (n=2) would flatten the points
            ends = pd.concat([y - err, y + err]).dropna().astype(float)
            if len(ends) and ends.max() - ends.min() <= 3 * max(hi - lo, 0.04):
                lo, hi = min(lo, float(ends.min())), max(hi, float(ends.max()))
            elif len(ends):
                ax.text(
                    0.01,
                    0.01,
                    "some 95% CI bars are cut by the frame",
                    transform=ax.transAxes,
                    fontsize=7,
                    color="#555",
                )
        pad = max(0.02, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    positive = [c for c in costs if c > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short_count(v)))
    if ax.get_xscale() == "log":  # minor ticks: 200k and 500k (not 2x10^5, and not every one: they collide)
        ax.xaxis.set_minor_formatter(
            FuncFormatter(lambda v, _: _short_count(v) if _leading_digit(v) in (2, 5) else "")
        )
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test accuracy (with each row's TTA policy)")
    ax.grid(alpha=0.3)
    literal(ax.legend(fontsize=8, loc="best").get_texts())
    ax.set_title("Test accuracy vs. parameters (Pareto front chosen on validation)", fontsize=10)
    return fig


def _leading_digit(value: float) -> int:
    """``300000 -> 3``: the first digit of a positive tick value."""
    return round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0


def _short_count(value: float) -> str:
    """``4754218 -> '4.754M'``, ``300000 -> '300k'``: axis tick labels."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:.4g}"


def _read_history(path: str) -> list[dict[str, Any]]:
    try:
        return json.loads(Path(path).read_bytes()).get("history") or []
    except (OSError, ValueError, AttributeError):
        return []


def training_curves(board: pd.DataFrame, runs: pd.DataFrame, top: int) -> Any | None:
    """Validation accuracy (without TTA) per epoch of the ``top`` configurations: mean over seeds,
    thin seeds behind. Each is labelled by what tells it apart from the others drawn
    (:func:`cifarbudget.leaderboard.describe_config`); labels too long to sit on the plot go
    below it, wrapped."""
    import textwrap

    from cifarbudget.plots import literal, whole_epoch_ticks

    ranked = runs[lb.ranked_mask(runs)]
    shown = board.head(top)
    curves_of: list[tuple[pd.Series, list[pd.Series]]] = []
    for _, row in shown.iterrows():
        curves: list[pd.Series] = []
        for path in ranked.loc[ranked["config_id"] == row["config_id"], "path"]:
            points = {h["epoch"]: h["val_acc"] for h in _read_history(path) if h.get("val_acc") is not None}
            if points:
                curves.append(pd.Series(points, dtype=float).sort_index())
        if curves:
            curves_of.append((row, curves))
    if not curves_of:
        return None
    drawn = pd.DataFrame([row for row, _ in curves_of])
    labels = [f"#{row['rank']} {lb.describe_config(row, among=drawn)} (n={row['n']})" for row, _ in curves_of]
    below = max(len(label) for label in labels) > LEGEND_ON_PLOT_CHARS
    if below:  # one entry per configuration, wrapped, under the axes
        labels = [
            "\n".join(textwrap.wrap(label, LEGEND_WRAP_CHARS, subsequent_indent="    ")) for label in labels
        ]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig = _figure(7.5, 4.2 + (0.15 * lines + 0.3 if below else 0.0))
    ax = fig.subplots()
    colors = ["#3465a4", "#cc0000", "#4e9a06", "#f57900", "#75507b", "#c4a000", "#06989a", "#555753"]
    for i, ((_, curves), label) in enumerate(zip(curves_of, labels, strict=True)):
        color = colors[i % len(colors)]
        for curve in curves:
            ax.plot(curve.index, curve.to_numpy(), color=color, alpha=0.25, lw=0.8)
        mean = pd.concat(curves, axis=1).mean(axis=1)
        ax.plot(
            mean.index,
            mean.to_numpy(),
            color=color,
            lw=1.8,
            marker="." if len(mean) < 30 else None,
            label=label,
        )
    whole_epoch_ticks(ax)  # one or two epochs: whole-epoch ticks, not 0.95 ... 1.05
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (no TTA)")
    ax.grid(alpha=0.3)
    if below:
        legend = fig.legend(loc="outside lower left", fontsize=7, frameon=False)
    else:
        legend = ax.legend(fontsize=7, loc="lower right")
    literal(legend.get_texts())
    ax.set_title(
        f"Validation accuracy (no TTA) of the top {len(curves_of)} configurations (thin lines: seeds)",
        fontsize=10,
    )
    return fig


def best_config(board: pd.DataFrame) -> pd.Series:
    """The configuration the report calls best: the board's reference (``tied == "best"``: the
    highest validation mean among rows with at least two seeds), not a one-seed row ranked above
    it; the first row when no row is marked."""
    marked = board[board["tied"] == "best"] if "tied" in board.columns else board.iloc[:0]
    return marked.iloc[0] if len(marked) else board.iloc[0]


def _best_seed(board: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.Series, str]:
    """The best configuration's seed with the best validation accuracy (test only without a
    validation split), and the column it was chosen on."""
    top = best_config(board)
    candidates = runs[lb.ranked_mask(runs) & (runs["config_id"] == top["config_id"])]
    order = [m for m in ("val_acc_tta", "val_acc", "test_acc_tta", "test_acc") if candidates[m].notna().any()]
    return candidates.sort_values(order[0], ascending=False).iloc[0], order[0]


def _row_confusion(final: dict[str, Any], policy: str) -> tuple[Any, Any, str | None]:
    """The test confusion matrix of a record for the TTA ``policy`` of a row, its test accuracy, and
    the policy it was computed with (``None``: without TTA, when the record has no matrix for it)."""
    if policy != "none":
        evaluated = (final.get("tta_evals") or {}).get(policy) or {}
        if evaluated.get("confusion_matrix"):
            return evaluated["confusion_matrix"], evaluated.get("test_acc"), policy
        if final.get("tta") == policy and final.get("confusion_matrix_tta"):  # records before tta_evals
            return final["confusion_matrix_tta"], final.get("test_acc_tta"), policy
    return final.get("confusion_matrix"), final.get("test_acc"), None


def best_run_confusion(board: pd.DataFrame, runs: pd.DataFrame) -> tuple[Any, str] | None:
    """The confusion-matrix figure of the best run of the best configuration, with the row's TTA
    policy (without TTA when the record has no matrix for it), and a caption."""
    from cifarbudget.plots import MAX_GRID_CLASSES, confusion_figure

    if board.empty:
        return None
    # the seed shown is chosen like everything else: on validation (test only without a validation split)
    best, chosen_on = _best_seed(board, runs)
    try:
        data = json.loads(Path(best["path"]).read_bytes())
    except (OSError, ValueError):
        return None
    policy = str(best.get("tta", "none"))
    matrix, acc, tta = _row_confusion(data.get("final") or {}, policy)
    if not matrix:
        return None
    classes = (data.get("data") or {}).get("classes") or [str(i) for i in range(len(matrix))]
    figure = confusion_figure(
        matrix, classes, str(best["run_id"]), test_acc=float(acc) if acc is not None else None, tta=tta
    )
    what = (
        "Confusion matrix (rows: true class, columns: predicted)"
        if len(classes) <= MAX_GRID_CLASSES
        else f"The most-confused pairs and least accurate classes ({len(classes)} classes: a full "
        "confusion matrix would be unreadable)"
    )
    if tta is not None:
        how = f", with TTA {tta}"
    elif policy != "none":
        how = f", without TTA (the record has no confusion matrix with TTA {policy})"
    else:
        how = ", without TTA"
    caption = (
        f"{what} of run {best['run_id']}, seed "
        f"{best['seed']}, the seed of the best configuration (marked best on the leaderboard) with the best "
        f"{chosen_on.replace('_', ' ')}{how}."
    )
    return figure, caption


def best_run(board: pd.DataFrame, runs: pd.DataFrame) -> pd.Series | None:
    """The run the report's per-run figures show: the best configuration's best seed on validation."""
    return None if board.empty else _best_seed(board, runs)[0]


def calibration_section(best: pd.Series | None) -> list[str]:
    """The best run's reliability diagram (stored bins: the model is not run again) and its ECE."""
    from cifarbudget.calibration import CalibrationBins, plot_reliability

    if best is None:
        return []
    try:
        record = json.loads(Path(best["path"]).read_bytes())
    except (OSError, ValueError):
        return []
    calibration = (record.get("final") or {}).get("calibration") or {}
    if not calibration.get("test_reliability"):
        return []
    bins = CalibrationBins.from_dict(calibration["test_reliability"])
    test = calibration.get("test") or {}
    figure = plot_reliability(bins, title=f"{best['run_id']} (test, no TTA)")
    text = f"ECE {test.get('ece', float('nan')):.4f}, NLL {test.get('nll', float('nan')):.4f}"
    if calibration.get("temperature") is not None:
        text += (
            f"; after temperature scaling fitted on validation (T = {calibration['temperature']:.3f}): "
            f"ECE {test.get('ece_ts', float('nan')):.4f}, NLL {test.get('nll_ts', float('nan')):.4f}"
        )
    return [
        "<h2>Calibration</h2>",
        _img(png_data_uri(figure), "reliability diagram of the best run on the test split"),
        f'<p class="note">Reliability diagram of run {_e(best["run_id"])} on the test split without TTA, 15 '
        "confidence bins (bars: accuracy per bin; black marks: the bin's mean confidence; hatched outlines: "
        "the gap between them, red where the model is overconfident, green where it is underconfident; "
        f"the diagonal: perfect calibration). {_e(text)}.</p>",
    ]


def gradcam_sample(n: int, max_images: int, seed: int = GRADCAM_SEED) -> list[int]:
    """Positions of ``max_images`` of a test split's ``n`` images drawn at random with ``seed`` (all
    of them when there are no more), in increasing order. Not the first images: an image-folder
    split is sorted by class, so those would be the first classes only."""
    if n <= max_images:
        return list(range(n))
    import numpy as np

    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, size=max_images, replace=False))


def _mistakes_grid(run_dir: Path, output: Path, k: int, max_images: int, seed: int) -> tuple[Any, int, int]:
    """Grad-CAM of the run's ``k`` most confident mistakes among :func:`gradcam_sample` of its test
    split (on the CPU; ``None`` when it makes no mistake on them), the number of images searched and
    the split's size: :func:`cifarbudget.explain.mistakes_gradcam`, which searches the first
    ``max_images`` images only."""
    from cifarbudget.explain import gradcam_grid, most_confident_mistakes
    from cifarbudget.export import load_test_split
    from cifarbudget.predict import Inputs, load_model, load_run

    result, checkpoint = load_run(run_dir)
    split = load_test_split(result, None, "load for Grad-CAM")
    sample = gradcam_sample(len(split.labels), max_images, seed)
    model = load_model(result, checkpoint)
    found = most_confident_mistakes(
        model, split.images[sample], split.labels[sample], k, mean=result.data["mean"], std=result.data["std"]
    )
    if not found:
        return None, len(sample), len(split.labels)
    name = result.spec["dataset"]
    ids = [str(i) for i in range(1, len(split.labels) + 1)]
    data = Inputs(
        split.images,
        ids,
        split.labels,
        list(split.classes),
        source=f"{name} test split",
        kind="dataset",
        dataset=name,
    )
    title = (
        f"Grad-CAM of the {len(found)} most confident mistakes of {result.run_id} among "
        f"{_searched(len(sample), len(split.labels), seed)} of {name}"
    )
    grid = gradcam_grid(run_dir, data, output, indices=[sample[i] for i in found], title=title)
    return grid, len(sample), len(split.labels)


def _searched(n_searched: int, n_split: int, seed: int) -> str:
    """``2,000 randomly chosen test images (seed 0)``, or ``all 150 test images``."""
    if n_searched >= n_split:
        return f"all {n_split:,} test images"
    return f"{n_searched:,} randomly chosen test images (seed {seed})"


def gradcam_section(
    best: pd.Series | None, k: int = 12, max_images: int = 2000, seed: int = GRADCAM_SEED
) -> list[str]:
    """Grad-CAM maps of the best run's most confident mistakes among ``max_images`` test images
    drawn at random with ``seed`` (:func:`gradcam_sample`)."""
    if best is None:
        return []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "mistakes.png"
            grid, n_searched, n_split = _mistakes_grid(Path(best["path"]).parent, target, k, max_images, seed)
            png = target.read_bytes() if grid is not None else None
    except CifarBudgetError as exc:  # grad-cam not installed, data or checkpoint missing
        message = str(exc).splitlines()[0]
        return [
            "<h2>Grad-CAM: the most confident mistakes</h2>",
            f'<p class="note">Not drawn: {_e(message)}</p>',
        ]
    if png is None:
        return []
    return [
        "<h2>Grad-CAM: the most confident mistakes</h2>",
        _img(png_data_uri(png), "Grad-CAM maps of the best run's most confident mistakes"),
        f'<p class="note">Grad-CAM (Selvaraju et al. 2017) of the {len(grid.indices)} most confident wrong '
        f"predictions of run {_e(best['run_id'])} among {_e(_searched(n_searched, n_split, seed))}: where the model looked for the "
        "class it predicted (title: true label, prediction, confidence).</p>",
    ]


# --- page ----------------------------------------------------------------------------------------
def _best_line(row: pd.Series, board: pd.DataFrame | None = None) -> str:
    """The header's line on the best configuration, saying which accuracy each figure is: ``Best:
    CONFIG: test accuracy 0.8525 with TTA flip (0.8350 without TTA) (n=2), 292,688 parameters;
    chosen on validation accuracy with TTA flip.`` CONFIG names the spec fields that vary across
    ``board`` (:func:`cifarbudget.leaderboard.describe_config`)."""
    tta = str(row.get("tta", "none"))
    with_tta = row.get("test_acc_tta_mean")
    if tta != "none" and with_tta is not None and not pd.isna(with_tta):
        accuracy = f"test accuracy {with_tta:.4f} with TTA {tta} ({row['test_acc_mean']:.4f} without TTA)"
    else:
        accuracy = f"test accuracy {row['test_acc_mean']:.4f} without TTA"
    on = "validation" if row.get("selected_on", "val") == "val" else "test (no validation split)"
    policy = f" with TTA {tta}" if tta != "none" else " without TTA"
    return (
        f"Best: {lb.describe_config(row, among=board)}: {accuracy} (n={row['n']}), {int(row['params']):,} parameters; "
        f"chosen on {on} accuracy{policy}."
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(frame: pd.DataFrame, css_class: str, max_rows: int = MAX_TABLE_ROWS) -> str:
    shown = frame.head(max_rows)
    table = lb.format_frame(shown, "html").replace('class="dataframe leaderboard"', f'class="{css_class}"')
    more = (
        (
            f'<p class="note">Showing {max_rows} of {len(frame)} rows; '
            "<code>cifarbudget leaderboard</code> prints them all.</p>"
        )
        if len(frame) > max_rows
        else ""
    )
    return f'<div class="scroll">{table}</div>{more}'


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def build_report(
    paths: Iterable[Path | str],
    *,
    budget: int = DEFAULT_BUDGET,
    compute_budget: int | None = None,
    min_seeds: int = 1,
    datasets: Sequence[str] = (),
    models: Sequence[str] = (),
    ttas: Sequence[str] = (),
    top: int = 5,
    warn: Callable[[str], None] | None = None,
) -> tuple[str, ReportSummary]:
    """The report page for the runs under ``paths`` as one HTML string, and its summary.

    ``warn`` is called with each warning (a skipped file) as soon as it is known, so that the
    warnings are shown even when nothing is left to report (then a :class:`CifarBudgetError` says so).
    """
    from cifarbudget import __version__
    from cifarbudget.budget import format_macs
    from cifarbudget.plots import figure_png
    from cifarbudget.results import git_revision, now

    folders = [str(p) for p in paths]
    loaded = lb.load_board(
        folders,
        budget=budget,
        compute_budget=compute_budget,
        min_seeds=min_seeds,
        datasets=datasets,
        models=models,
        ttas=ttas,
        warn=warn,
    )
    runs, board, left_out, warnings, n_files = (
        loaded.runs,
        loaded.ranking,
        loaded.not_ranked,
        loaded.warnings,
        loaded.n_read,
    )

    sections: list[str] = []
    sections.append("<h2>Leaderboard</h2>")
    if board.empty:
        sections.append('<p class="note">No finished, within-budget run to rank.</p>')
    else:
        sections.append(
            '<p class="note">One row per configuration (every spec field except the seed). '
            "n seeds; mean, sample standard deviation and 95% Student t half-width of the test accuracy "
            "(the test split is evaluated once per run, at the end). Ranked within each dataset by mean "
            "<em>validation</em> accuracy (with the row's TTA policy); configurations without a validation "
            "split are ranked by test accuracy and marked <code>selected_on = test</code>. "
            "<code>tied</code>: not significantly different from the best of its dataset (Welch's t-test, "
            "5%); <code>n=1</code>: a single seed, untestable.</p>"
        )
        sections.append(_table(board, "leaderboard"))
    if not left_out.empty:
        sections.append(f"<h2>Not ranked ({len(left_out)} run{'' if len(left_out) == 1 else 's'})</h2>")
        sections.append(_table(left_out.drop(columns=["path"]), "notranked"))

    sections.append("<h2>Accuracy vs. parameters</h2>")
    sections.append(
        _img(
            png_data_uri(accuracy_vs_params(board, runs, budget)),
            "test accuracy against trainable parameters with the Pareto front and budget line",
        )
    )
    sections.append(
        '<p class="note">Each configuration\'s mean test accuracy with its own TTA policy (without TTA '
        "for a row without one), with its 95% CI. Red: the Pareto front, chosen per dataset on the "
        "ranking's accuracy (mean validation accuracy with the row's TTA policy; test accuracy for "
        "configurations without a validation split), as <code>cifarbudget leaderboard --pareto params</code>: "
        "no configuration of its dataset is both more accurate on validation and smaller. It is drawn at "
        "test accuracy, where a configuration off the front can lie above it. Dashed green: the budget "
        f"({budget:,} parameters).</p>"
    )

    figures: list[str] = []
    curves = training_curves(board, runs, top) if not board.empty else None
    if curves is not None:
        figures.append(
            _img(png_data_uri(curves), f"validation accuracy (no TTA) per epoch, top {top} configurations")
        )
    confusion = best_run_confusion(board, runs)
    if confusion is not None:
        figures.append(_img(png_data_uri(figure_png(confusion[0])), confusion[1]))
    if figures:
        sections.append("<h2>Training curves and confusion matrix</h2>")
        sections.append('<div class="figs">' + "".join(figures) + "</div>")
        if confusion is not None:
            sections.append(f'<p class="note">{_e(confusion[1])}</p>')

    best = best_run(board, runs)
    sections.extend(calibration_section(best))
    sections.extend(gradcam_section(best))

    ablation = lb.ablation(board)
    if not ablation.empty:
        sections.append("<h2>Ablation</h2>")
        sections.append(
            '<p class="note">Mean validation accuracy of the configurations with vs. without each '
            "augmentation and scheduler (each trained configuration counts once); TTA is paired: the same "
            "configurations with and without it. Marginal, not causal, when the grid is unbalanced. "
            "<code>cifarbudget leaderboard --ablation --ablation-on test</code> gives the test figures.</p>"
        )
        sections.append(_table(ablation, "ablation"))

    n_runs = int(runs["run_id"].nunique()) if "run_id" in runs else 0
    ranked_runs = int(runs.loc[lb.ranked_mask(runs), "run_id"].nunique()) if n_runs else 0
    devices = runs["device_name"].dropna().value_counts()
    revisions = runs["git_revision"].dropna().value_counts()
    provenance = {
        "generated at": now(),
        "cifarbudget version": __version__ + (f" (git {revision})" if (revision := git_revision()) else ""),
        "result folders": ", ".join(folders),
        "runs": f"{n_runs} ({n_files - n_runs} filtered out); {len(runs)} rows (a run evaluated with "
        f"several TTA policies has one row per policy), {ranked_runs} runs "
        f"ranked in {len(board)} configurations, {len(left_out)} rows not ranked",
        "filters": ", ".join(
            [f"dataset {d}" for d in datasets]
            + [f"model {m}" for m in models]
            + [f"tta {t}" for t in ttas]
            + [f"parameter budget {budget:,} (runs at or over it are not ranked)"]
            + (
                [f"compute budget {format_macs(compute_budget)} training MACs (runs over it are not ranked)"]
                if compute_budget is not None
                else []
            )
            + (
                [f"at least {min_seeds} finished seeds (configurations with fewer are not ranked)"]
                if min_seeds > 1
                else []
            )
        ),
        "devices": "; ".join(f"{d} ({c} runs)" for d, c in devices.items()) or "unknown",
        "git revisions": "; ".join(f"{r} ({c} runs)" for r, c in revisions.items()) or "unknown",
    }
    sections.append("<h2>Provenance</h2>")
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in provenance.items())
    sections.append(f"<dl>{items}</dl>")
    if warnings:
        sections.append(f"<h3>Warnings ({len(warnings)})</h3>")
        sections.append('<ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>")
    else:
        sections.append('<p class="note">Every result file was read without warnings.</p>')

    title = "cifarbudget report"
    best_line = ""
    if not board.empty:
        best_line = _e(_best_line(best_config(board), board))
        keys = lb.comparable_key(board)
        groups = sorted(set(keys))
        if len(groups) > 1:  # each ranking has its own best; the sections below show the first's
            key = keys.loc[best_config(board).name]
            best_line = (
                _e(
                    f"{len(groups)} rankings kept apart (different datasets or data: {', '.join(groups)}); "
                    f"on {key}: "
                )
                + best_line
            )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<h1>{title}</h1>\n<p class="sub">{n_runs} runs from {_e(", ".join(folders))}. {best_line}</p>\n'
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
    summary = ReportSummary(None, n_runs, len(board), warnings)
    return page, summary


def write_report(
    paths: Iterable[Path | str],
    output: Path | str,
    *,
    budget: int = DEFAULT_BUDGET,
    compute_budget: int | None = None,
    min_seeds: int = 1,
    datasets: Sequence[str] = (),
    models: Sequence[str] = (),
    ttas: Sequence[str] = (),
    top: int = 5,
    warn: Callable[[str], None] | None = None,
) -> ReportSummary:
    """Write the report page to ``output`` (atomically) and return its summary (``warn``: as
    :func:`build_report`)."""
    page, summary = build_report(
        paths,
        budget=budget,
        compute_budget=compute_budget,
        min_seeds=min_seeds,
        datasets=datasets,
        models=models,
        ttas=ttas,
        top=top,
        warn=warn,
    )
    atomic_write_text(output, page)
    summary.path = Path(output)
    return summary

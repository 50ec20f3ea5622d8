"""The HTML report: one self-contained page (inline CSS, PNG data URIs), checked as text and in Chromium.

The Chromium test renders the page headless (``--dump-dom`` and ``--screenshot``) and skips when
no Chromium is installed.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from PIL import Image, ImageStat
from records import grid_records, make_record, unranked_records, write_records

from cifarbudget import leaderboard as lb
from cifarbudget.errors import CifarBudgetError
from cifarbudget.plots import confusion_figure, curves_figure, figure_png, plot_confusion
from cifarbudget.report import (
    accuracy_vs_params,
    best_run,
    best_run_confusion,
    build_report,
    gradcam_sample,
    gradcam_section,
    row_test_accuracy,
    training_curves,
)
from cifarbudget.results import git_revision

Invoke = Callable[..., Result]
DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
REMOTE = re.compile(  # a src/href/url() to another host (http, https or protocol-relative), or @import
    r"""(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""",
    re.IGNORECASE,
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture
def report_file(invoke: Invoke, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_records(runs, grid_records() + unranked_records())
    bad = write_records(runs, [make_record("resnet20", 9, 0.5)])[0]
    bad.write_text(bad.read_text()[:100])  # truncated: a warning in the provenance
    output = tmp_path / "site" / "report.html"
    result = invoke(["report", str(runs), "--output", str(output), "--budget", "4M"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {output}: 12 runs, 4 ranked configurations\n"
    assert f"warning: skipped {bad}: corrupt or truncated JSON" in result.stderr
    return output


def test_report_is_one_self_contained_page(report_file: Path) -> None:
    page = report_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert REMOTE.search(page) is None, REMOTE.search(page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    images = DATA_URI.findall(page)
    assert len(images) == 3  # accuracy vs. params, training curves, confusion matrix
    for encoded in images:
        png = base64.b64decode(encoded)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as image:
            assert image.width > 300 and image.height > 300


def test_report_content(report_file: Path) -> None:
    page = report_file.read_text()
    assert page.count('<table class="leaderboard"') == 1
    assert page.count('<table class="notranked"') == 1
    assert page.count('<table class="ablation"') == 1
    body = page.split('<table class="leaderboard"')[1].split("</table>")[0]
    assert body.count("<tr") == 1 + 4
    assert "<td>0.8350</td>" in body and "<td>0.0635</td>" in body  # mean and CI of configuration #1
    assert "Not ranked (4 runs)" in page
    assert "out of budget: 11,171,146 parameters, budget 4,000,000" in page  # the board's budget decides
    # the header names each accuracy: the row's TTA policy at test, without it, and what chose the row
    best = (
        "Best: airnet-small | crop-flip+cutout | multistep | tta flip | 3 ep: test accuracy 0.8525 with TTA "
        "flip (0.8350 without TTA) (n=2), 292,688 parameters; chosen on validation accuracy with TTA flip."
    )
    assert best in page
    assert "Dashed green: the budget (4,000,000 parameters)" in page
    assert "It is drawn at test accuracy, where a configuration off the front can lie above it." in page
    assert (
        "the seed of the best configuration (marked best on the leaderboard) with the best val acc tta, with TTA flip"
        in page
    )
    assert "<dt>cifarbudget version</dt>" in page and "<dt>generated at</dt>" in page
    if git_revision():  # a checkout: the code that generated the page, beside its version
        assert f" (git {git_revision()})</dd>" in page
    assert (
        "12 (0 filtered out); 12 rows (a run evaluated with several TTA policies has one row per policy), "
        "8 runs ranked in 4 configurations, 4 rows not ranked" in page
    )
    assert "Warnings (1)" in page and "corrupt or truncated JSON" in page


def test_a_run_evaluated_with_two_policies_counts_once(tmp_path: Path) -> None:
    records = [make_record("airnet-small", seed, 0.8, tta="flip", test_acc_tta=0.81) for seed in (0, 1)]
    for r in records:
        r["final"]["tta_evals"]["flip-shift"] = dict(r["final"]["tta_evals"]["flip"], views=10)
    write_records(tmp_path, records)
    page, summary = build_report([tmp_path], top=1)
    assert summary.n_runs == 2
    assert '<p class="sub">2 runs from' in page
    assert (
        "2 (0 filtered out); 4 rows (a run evaluated with several TTA policies has one row per policy), 2 runs ranked in 2 configurations"
        in page
    )


def test_a_lucky_one_seed_row_is_not_the_reports_best(tmp_path: Path) -> None:
    """A one-seed row ranked first (by its mean, as every row) is not the best configuration: the
    header and the best run's figures use the row marked best, which has two seeds."""
    lucky = make_record("resnet20", 0, 0.9, val_acc=0.9)
    steady = [make_record("airnet-small", seed, acc, val_acc=acc) for seed, acc in ((0, 0.8), (1, 0.82))]
    write_records(tmp_path, [lucky, *steady])
    page, _ = build_report([tmp_path], top=1)
    assert "Best: airnet-small" in page and "(n=2)" in page
    assert f"of run {steady[1]['run_id']}, seed 1, the seed of the best configuration" in page


def test_report_filters_and_errors(tmp_path: Path) -> None:
    write_records(tmp_path, grid_records())
    page, summary = build_report([tmp_path], models=["resnet*"], top=1)
    assert (summary.n_runs, summary.n_ranked_configs) == (4, 2)
    assert "airnet-small" not in page.split("<h2>Provenance</h2>")[0]
    assert len(DATA_URI.findall(page)) == 3
    with pytest.raises(CifarBudgetError, match="no runs match --dataset/--model"):
        build_report([tmp_path], datasets=["cifar100"])
    with pytest.raises(CifarBudgetError, match="no run results found in"):
        build_report([tmp_path / "empty"])


def test_report_cli_without_results(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(["report", str(tmp_path), "--output", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: no run results found in {tmp_path}\n"
    assert not (tmp_path / "r.html").exists()
    assert "Examples:" in invoke(["report", "--help"]).stdout


def test_report_renders_in_headless_chromium(report_file: Path, tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed")
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = report_file.resolve().as_uri()
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert dom.count('<table class="leaderboard"') == 1
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == 3
    assert "<h2>Accuracy vs. parameters</h2>" in dom

    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, "--window-size=1280,2000", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        gray = image.convert("L")
        stats = ImageStat.Stat(gray)
        assert stats.stddev[0] > 20  # text, tables and plots, not a blank page
        dark = sum(gray.histogram()[:128])
        assert dark > 0.005 * 1280 * 2000
        # the plots are drawn: the page has the blue of the scatter/curves somewhere
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
        assert len(colors) > 500


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of a tiny real run: records with calibration bins and checkpoints."""
    import cifarbudget

    cifarbudget.reset_plugins(autoload=False)
    results = tmp_path_factory.mktemp("real")
    for seed in (0, 1):
        cifarbudget.run(
            "resnet20",
            dataset="synthetic",
            epochs=1,
            train_subset=512,
            val_size=128,
            batch_size=64,
            seed=seed,
            tta="flip",
            results_dir=results,
            progress=False,
        )
    return results


def test_report_of_real_runs_has_calibration_and_gradcam_sections(
    real_runs: Path, invoke: Invoke, tmp_path: Path
) -> None:
    page_path = tmp_path / "report.html"
    out = invoke(["report", str(real_runs), "-o", str(page_path)])
    assert out.exit_code == 0, out.output
    page = page_path.read_text()
    assert "<h2>Calibration</h2>" in page and "reliability diagram of the best run" in page
    assert "ECE 0." in page and "temperature scaling fitted on validation" in page
    assert "<h2>Grad-CAM: the most confident mistakes</h2>" in page
    assert "Grad-CAM maps of the best run" in page  # drawn, not "Not drawn"
    assert len(DATA_URI.findall(page)) == 5  # params plot, curves, confusion, reliability, Grad-CAM
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += [
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'p'}",
    ]
    shown = subprocess.run(
        [*flags, "--enable-logging=stderr", "--v=0", "--dump-dom", page_path.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert (
        "<h2>Calibration</h2>" in shown.stdout
        and "<h2>Grad-CAM: the most confident mistakes</h2>" in shown.stdout
    )
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line]
    assert console == []  # the page logs nothing: no script, no error


def test_one_epoch_curves_have_whole_epoch_ticks_and_ci_bars_fit_the_frame(tmp_path: Path) -> None:
    def board_of(folder: Path, accs: dict[str, list[float]]) -> lb.Board:
        records = [
            make_record(model, seed, acc, val_acc=acc, epochs=1)
            for model, values in accs.items()
            for seed, acc in enumerate(values)
        ]
        write_records(folder, records)
        return lb.load_board([folder])

    def texts(ax) -> list[str]:  # type: ignore[no-untyped-def]
        return [t.get_text() for t in ax.texts]

    board = board_of(tmp_path / "a", {"airnet-small": [0.80, 0.81, 0.805], "resnet20": [0.70, 0.71, 0.705]})
    curves = training_curves(board.ranking, board.runs, top=2)
    assert list(curves.axes[0].get_xticks()) == [1]  # not 0.95, 0.975, ..., 1.05
    assert curves.axes[0].get_ylabel() == "validation accuracy (no TTA)"  # the history's, without TTA
    ax = accuracy_vs_params(board.ranking, board.runs, 5_000_000).axes[0]
    mean, ci = board.ranking["test_acc_mean"], board.ranking["test_acc_ci95"]
    low, high = ax.get_ylim()
    assert low <= (mean - ci).min() and high >= (mean + ci).max()  # the bars are inside the frame
    assert "some 95% CI bars are cut by the frame" not in texts(ax)
    # two seeds far apart: a bar ten times the points' spread is cut, and the plot says so
    wide = board_of(tmp_path / "b", {"airnet-small": [0.60, 0.99], "resnet20": [0.79, 0.795]})
    assert "some 95% CI bars are cut by the frame" in texts(
        accuracy_vs_params(wide.ranking, wide.runs, 5_000_000).axes[0]
    )


def test_accuracy_vs_params_draws_the_rows_test_accuracy_with_their_tta_and_says_so(tmp_path: Path) -> None:
    """The TTA rows were drawn at their accuracy without TTA under a "test accuracy" axis, and the
    caption said the front (chosen on validation) had no more accurate smaller configuration."""
    write_records(tmp_path, grid_records())
    board = lb.load_board([tmp_path])
    ax = accuracy_vs_params(board.ranking, board.runs, 5_000_000).axes[0]
    points = ax.containers[0].lines[0].get_ydata()
    expected = [
        row["test_acc_tta_mean"] if row["tta"] == "flip" else row["test_acc_mean"]
        for _, row in board.ranking.iterrows()
    ]
    assert list(points) == pytest.approx(expected) and list(
        row_test_accuracy(board.ranking)
    ) == pytest.approx(expected)
    assert 0.8525 in [round(v, 6) for v in points]  # airnet-small, flip: (0.845 + 0.86) / 2
    assert ax.get_ylabel() == "test accuracy (with each row's TTA policy)"
    assert ax.get_title() == "Test accuracy vs. parameters (Pareto front chosen on validation)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Pareto front (chosen on validation)" in legend
    assert "configuration (mean test accuracy, 95% CI)" in legend
    assert "one seed (no CI)" not in legend  # every row has two seeds
    page, _ = build_report([tmp_path], top=1)
    assert "no configuration is both more accurate and smaller" not in page
    assert "no configuration of its dataset is both more accurate on validation and smaller" in page


def test_one_seed_points_are_drawn_hollow_and_named(tmp_path: Path) -> None:
    """A one-seed row has no confidence interval: without a mark, no bar read as certainty."""
    write_records(tmp_path, [*grid_records(), make_record("airnet-small", 1, 0.7, lr=0.3)])
    board = lb.load_board([tmp_path])
    assert (board.ranking["n"] == 1).sum() == 1
    ax = accuracy_vs_params(board.ranking, board.runs, 5_000_000).axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "one seed (no CI)" in legend
    (hollow,) = [line for line in ax.get_lines() if line.get_label() == "one seed (no CI)"]
    assert list(hollow.get_xdata()) == [292_688] and hollow.get_markerfacecolor() == "white"


def test_user_text_with_dollars_is_drawn_as_written(tmp_path: Path) -> None:
    """matplotlib read "cost_$1_$2" (an image-folder class) as a formula and raised ValueError."""
    classes = ["cost_$1_$2", "a$b", "$x$"]
    matrix = [[5, 1, 0], [0, 6, 0], [1, 0, 5]]
    fig = confusion_figure(matrix, classes, "run_$1_$2", test_acc=0.8, tta=None)
    png = figure_png(fig)  # raised: mathtext cannot parse "1_"
    assert png.startswith(b"\x89PNG")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert ax.get_title() == "run_$1_$2\ntest accuracy 0.8000 (no TTA)"
    drawn = [ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()]
    assert not any(t.get_parse_math() for t in drawn)
    # more than 20 classes: the most-confused pairs, their names as tick labels
    many = [f"c_${i}_$" for i in range(25)]
    big = [[10 if i == j else (1 if j == (i + 1) % 25 else 0) for j in range(25)] for i in range(25)]
    plot_confusion(big, many, tmp_path / "pairs.png", "run_$1_$2")
    pairs = confusion_figure(big, many, "run_$1_$2")
    figure_png(pairs)
    labels = [t.get_text() for t in pairs.axes[0].get_yticklabels()]
    assert "c_$0_$ -> c_$1_$" in labels
    assert pairs.get_suptitle() == "run_$1_$2"
    curves = curves_figure([{"epoch": 1, "train_acc": 0.5, "train_loss": 1.0}], "airnet | cost_$1_$2")
    figure_png(curves)
    # the report's figures: model names in labels and legends, class names and run ids in titles
    records = [make_record("airnet-small", seed, 0.8) for seed in (0, 1)]
    for record in records:
        record["data"]["classes"] = [f"cost_${i}_${i + 1}" for i in range(10)]
        record["run_id"] = f"run_$1_${record['run_id']}"
        record["final"]["calibration"] = {
            "test_reliability": {"counts": [0, 10], "accuracy": [None, 0.9], "confidence": [None, 0.8]},
            "test": {"ece": 0.1, "nll": 0.3},
        }
    write_records(tmp_path / "runs", records)
    page, _ = build_report([tmp_path / "runs"], top=2)
    assert "<h2>Calibration</h2>" in page and "run_$1_$" in page
    board = lb.load_board([tmp_path / "runs"])
    ranking = board.ranking.assign(model="net_$1_$2")
    ax = accuracy_vs_params(ranking, board.runs, 5_000_000).axes[0]
    figure_png(ax.figure)
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("#")] == ["#1 net_$1_$2"]
    curves_ax = training_curves(ranking, board.runs, top=1).axes[0]
    figure_png(curves_ax.figure)
    assert [t.get_text() for t in curves_ax.get_legend().get_texts()] == [
        "#1 net_$1_$2 | crop-flip | multistep | 3 ep (n=2)"
    ]


def test_configurations_differing_only_in_a_parameter_get_different_labels(tmp_path: Path) -> None:
    """Two learning rates of one recipe: the curves' legend told them apart by rank alone, and the
    best line did not say which learning rate won."""
    records = [make_record("airnet-small", seed, 0.80 + 0.01 * seed, lr=0.4) for seed in (0, 1)]
    records += [make_record("airnet-small", seed, 0.70 + 0.01 * seed, lr=0.1) for seed in (0, 1)]
    write_records(tmp_path / "runs", records)
    board = lb.load_board([tmp_path / "runs"])
    ax = training_curves(board.ranking, board.runs, top=2).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "#1 airnet-small | crop-flip | multistep | 3 ep | lr=0.4 (n=2)",
        "#2 airnet-small | crop-flip | multistep | 3 ep | lr=0.1 (n=2)",
    ]
    page, _ = build_report([tmp_path / "runs"], top=2)
    assert "Best: airnet-small | crop-flip | multistep | 3 ep | lr=0.4: test accuracy" in page
    # one configuration drawn alone, or fields that are the same in every row: no suffix
    ax = training_curves(board.ranking.head(1), board.runs, top=1).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "#1 airnet-small | crop-flip | multistep | 3 ep (n=2)"
    ]


def test_describe_config_names_the_parameters_that_vary_not_whole_tables() -> None:
    among = pd.DataFrame(
        {
            "model": ["a", "a", "a"],
            "augs": ["x", "x", "x"],
            "sched": ["s", "s", "s"],
            "epochs": [1, 1, 1],
            "ema": [0.99, float("nan"), 0.0],
            "aug_params": [
                '{"cutmix": {"alpha": 0.5, "p": 1.0}}',
                '{"cutmix": {"p": 1.0}}',
                '{"cutmix": {"alpha": 2.0, "p": 1.0}}',
            ],
            "model_params": ['{"whiten": true}', '{"whiten": false}', '{"whiten": true}'],
            "opt_params": ['{"betas": [0.9, 0.99]}', '{"betas": [0.9, 0.99]}', "{}"],
            "batch_size": [128, 128, 128],
        }
    )
    labels = [lb.describe_config(row, among=among) for _, row in among.iterrows()]
    assert labels == [  # cutmix.p is the same everywhere: not named; a default is left out
        "a | x | s | 1 ep | ema=0.99 aug.cutmix.alpha=0.5 model.whiten=true opt.betas=[0.9,0.99]",
        "a | x | s | 1 ep | ema=- model.whiten=false opt.betas=[0.9,0.99]",
        "a | x | s | 1 ep | ema=0 aug.cutmix.alpha=2 model.whiten=true",
    ]
    assert lb.describe_config(among.iloc[0]) == "a | x | s | 1 ep"  # without among: the core label


def test_long_curve_labels_go_below_the_plot_wrapped(tmp_path: Path) -> None:
    """The labels of configurations that differ in many parameters squeezed the axes to nothing
    (matplotlib: "axes sizes collapsed to zero")."""
    records = [make_record("airnet-small", seed, 0.80 + 0.01 * seed, lr=0.4) for seed in (0, 1)]
    records += [make_record("airnet-small", seed, 0.70 + 0.01 * seed, lr=0.1) for seed in (0, 1)]
    for record in records[2:]:
        record["spec"]["aug_params"] = {"crop-flip": {"padding": 2, "padding_mode": "reflect", "flip": True}}
        record["spec"]["opt_params"] = {"nesterov_extra": 1, "bn_bias_lr_scale": 64, "norm_weight_decay": 0}
    write_records(tmp_path / "runs", records)
    board = lb.load_board([tmp_path / "runs"])
    fig = training_curves(board.ranking, board.runs, top=2)
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1  # under the axes, not on them
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == 2 and all(max(len(line) for line in t.split("\n")) <= 120 for t in texts)
    assert "opt.bn_bias_lr_scale=64" in texts[1].replace("\n    ", " ") and "lr=0.1" in texts[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" is a UserWarning
        figure_png(fig)
    assert fig.axes[0].get_window_extent().height > 200  # the plot keeps its size


def test_the_confusion_matrix_is_the_best_rows_tta_policy_and_says_which(tmp_path: Path) -> None:
    """A run trained without TTA and evaluated later with flip: its flip row is the best, and the
    report drew the matrix without TTA under a title that named no policy."""
    plain = [[9, 1], [2, 8]]
    flipped = [[10, 0], [1, 9]]
    records = [make_record("airnet-small", seed, 0.85, val_acc=0.8) for seed in (0, 1)]
    for record in records:
        record["data"]["classes"] = ["cat", "dog"]
        record["final"]["confusion_matrix"] = plain
        record["final"]["tta_evals"] = {  # added by `cifarbudget run ... --tta flip` on the finished run
            "flip": {"val_acc": 0.9, "test_acc": 0.95, "views": 2, "confusion_matrix": flipped}
        }
    write_records(tmp_path, records)
    board = lb.load_board([tmp_path])
    assert board.ranking.iloc[0]["tta"] == "flip"
    figure, caption = best_run_confusion(board.ranking, board.runs)
    ax = figure.axes[0]
    assert ax.get_title().endswith("\ntest accuracy 0.9500 (TTA flip)")
    assert ax.images[0].get_array().tolist() == [[1.0, 0.0], [0.1, 0.9]]  # the flip matrix, row-normalised
    assert caption.endswith("with the best val acc tta, with TTA flip.")
    # a run without TTA: the plain matrix, and the title says so
    for record in records:
        del record["final"]["tta_evals"]
    write_records(tmp_path / "plain", records)
    board = lb.load_board([tmp_path / "plain"])
    figure, caption = best_run_confusion(board.ranking, board.runs)
    assert figure.axes[0].get_title().endswith("\ntest accuracy 0.8500 (no TTA)")
    assert caption.endswith("with the best val acc, without TTA.")
    # a flip row whose record has no matrix for flip: the plain one, named as such
    for record in records:
        record["final"]["tta_evals"] = {"flip": {"val_acc": 0.9, "test_acc": 0.95, "views": 2}}
    write_records(tmp_path, records)
    board = lb.load_board([tmp_path])
    figure, caption = best_run_confusion(board.ranking, board.runs)
    assert figure.axes[0].get_title().endswith("\ntest accuracy 0.8500 (no TTA)")
    assert "without TTA (the record has no confusion matrix with TTA flip)" in caption
    # what a run's own confusion.png says (the runner passes the accuracy and the policy)
    titled = confusion_figure(flipped, ["cat", "dog"], "airnet-small | 3 ep", test_acc=0.95, tta="flip")
    assert titled.axes[0].get_title() == "airnet-small | 3 ep\ntest accuracy 0.9500 (TTA flip)"
    assert confusion_figure(plain, ["cat", "dog"], test_acc=0.85).axes[0].get_title() == (
        "test accuracy 0.8500 (no TTA)"
    )


def test_report_warns_of_what_it_skipped_when_nothing_loads(tmp_path: Path) -> None:
    """``report notjson.json nosuchdir`` said only "no run results found"; ``leaderboard`` says why."""
    notjson = tmp_path / "notjson.json"
    notjson.write_text("not json")
    seen: list[str] = []
    with pytest.raises(CifarBudgetError, match="no run results found in"):
        build_report([notjson, tmp_path / "nosuchdir"], warn=seen.append)
    assert seen == [
        f"no such file or folder: {tmp_path / 'nosuchdir'}",
        f"skipped {notjson}: corrupt or truncated JSON (Expecting value: line 1 column 1 (char 0))",
    ]


def test_the_report_command_prints_each_warning_once_also_when_nothing_loads(
    tmp_path: Path, invoke: Callable[..., Result]
) -> None:
    notjson = tmp_path / "notjson.json"
    notjson.write_text("not json")
    out = invoke(["report", str(notjson), str(tmp_path / "nosuchdir"), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0] == f"warning: no such file or folder: {tmp_path / 'nosuchdir'}"
    assert lines[1].startswith(f"warning: skipped {notjson}: corrupt or truncated JSON")
    assert lines[2].startswith("Error: no run results found in") and len(lines) == 3
    write_records(tmp_path / "runs", grid_records())
    out = invoke(["report", str(tmp_path / "runs"), str(notjson), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 0 and out.stderr.count(f"skipped {notjson}") == 1  # once, not twice


def test_two_rankings_of_one_dataset_are_named_in_the_header(tmp_path: Path) -> None:
    """Runs on two image folders are ranked apart (leaderboard.comparable_key): the header says
    so and names the ranking its best line comes from."""
    records = [
        make_record(model, seed, acc, dataset="imagefolder", data_id=data)
        for data, acc in (("aaaaaaaa11112222", 0.9), ("bbbbbbbb33334444", 0.6))
        for model in ("resnet20", "airnet-small")
        for seed in (1, 2)
    ]
    write_records(tmp_path, records)
    page, _ = build_report([tmp_path])
    assert (
        "2 rankings kept apart (different datasets or data: imagefolder (data aaaaaaaa), imagefolder "
        "(data bbbbbbbb)); on imagefolder (data aaaaaaaa): Best: " in page
    )


def test_gradcam_titles_are_drawn_as_written() -> None:
    """A class named ``cost_$1_$2``: matplotlib's mathtext raised ValueError in explain's titles."""
    import numpy as np
    import torch

    from cifarbudget.explain import gradcam_figure

    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    fig = gradcam_figure(
        images, np.zeros((2, 8, 8)), [0, 1], [0.9, 0.8], ["cost_$1_$2", "b$"], [1, 1], title="run $x$"
    )
    figure_png(fig)  # renders
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "true cost_$1_$2" not in titles and "true b$" in titles and "pred cost_$1_$2 90%" in titles
    assert fig.get_suptitle() == "run $x$"


def test_provenance_lists_every_filter(tmp_path: Path) -> None:
    """``--tta flip --compute-budget 40G`` was reported as "filters: none"."""
    write_records(tmp_path, grid_records())
    page, _ = build_report([tmp_path], ttas=["flip"], compute_budget=40_000_000_000, budget=4_000_000)
    assert (
        "<dt>filters</dt><dd>tta flip, parameter budget 4,000,000 (runs at or over it are not ranked), "
        "compute budget 40.0G training MACs (runs over it are not ranked)</dd>" in page
    )
    page, _ = build_report([tmp_path], datasets=["synthetic"], models=["resnet*"])
    assert (
        "<dt>filters</dt><dd>dataset synthetic, model resnet*, parameter budget 5,000,000 (runs at or "
        "over it are not ranked)</dd>" in page
    )
    page, summary = build_report([tmp_path], min_seeds=3)
    assert (
        "<dt>filters</dt><dd>parameter budget 5,000,000 (runs at or over it are not ranked), at least 3 "
        "finished seeds (configurations with fewer are not ranked)</dd>" in page
    )
    assert summary.n_ranked_configs == 0  # the grid has two seeds per configuration


def test_a_runs_curves_have_whole_epoch_ticks_and_say_no_tta() -> None:
    """A 1-2 epoch run's curves.png had ticks at 0.96 ... 1.04."""

    def history(epochs: int) -> list[dict[str, float]]:
        return [
            {"epoch": e, "train_acc": 0.5, "train_loss": 1.0, "val_acc": 0.4, "val_loss": 1.2}
            for e in range(1, epochs + 1)
        ]

    for epochs, ticks in ((1, [1]), (2, [1, 2])):
        ax_acc, ax_loss = curves_figure(history(epochs), "one run").axes
        assert list(ax_acc.get_xticks()) == ticks and list(ax_loss.get_xticks()) == ticks
    assert ax_acc.get_ylabel() == "accuracy (no TTA)"
    assert [t.get_text() for t in ax_acc.get_legend().get_texts()] == ["train", "validation (no TTA)"]
    ten = curves_figure(history(10)).axes[0]
    assert all(float(t).is_integer() for t in ten.get_xticks())


def test_gradcam_sample_is_seeded_and_spans_the_split() -> None:
    sample = gradcam_sample(10_000, 2_000)
    assert sample == gradcam_sample(10_000, 2_000, seed=0) and sample == sorted(set(sample))
    assert len(sample) == 2_000 and max(sample) > 9_000  # not the first 2,000 (the first classes)
    assert sample != gradcam_sample(10_000, 2_000, seed=1)
    assert gradcam_sample(150, 2_000) == list(range(150))


def test_gradcam_searches_a_seeded_random_sample_of_the_test_split(
    real_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mistakes were searched among the first 2,000 test images only: on an image-folder split
    (sorted by class) the first classes only."""
    import torch

    import cifarbudget.explain
    from cifarbudget.export import load_test_split
    from cifarbudget.predict import load_run

    searched: list[torch.Tensor] = []
    drawn: list[list[int]] = []
    search, draw = cifarbudget.explain.most_confident_mistakes, cifarbudget.explain.gradcam_grid

    def spy_search(model, images, *args, **kwargs):  # type: ignore[no-untyped-def]
        searched.append(images)
        return search(model, images, *args, **kwargs)

    def spy_draw(*args, **kwargs):  # type: ignore[no-untyped-def]
        drawn.append(list(kwargs["indices"]))
        return draw(*args, **kwargs)

    monkeypatch.setattr(cifarbudget.explain, "most_confident_mistakes", spy_search)
    monkeypatch.setattr(cifarbudget.explain, "gradcam_grid", spy_draw)
    board = lb.load_board([real_runs])
    best = best_run(board.ranking, board.runs)
    section = "\n".join(gradcam_section(best, k=4, max_images=200))
    assert "among 200 randomly chosen test images (seed 0)" in section
    split = load_test_split(load_run(Path(best["path"]).parent)[0], None, "test")
    sample = gradcam_sample(len(split.labels), 200)
    assert len(split.labels) == 2_000 and max(sample) > 1_800
    assert len(searched) == 1 and torch.equal(searched[0], split.images[sample])  # not split.images[:200]
    assert len(drawn) == 1 and len(drawn[0]) == 4 and set(drawn[0]) <= set(sample)

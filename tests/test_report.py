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
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from PIL import Image, ImageStat
from records import grid_records, make_record, unranked_records, write_records

from cifarbudget import leaderboard as lb
from cifarbudget.errors import CifarBudgetError
from cifarbudget.report import accuracy_vs_params, build_report, training_curves

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
    best = "Best: airnet-small | crop-flip+cutout | multistep | tta flip | 3 ep: test accuracy 0.8350 (n=2)"
    assert best in page
    assert "Dashed green: the budget (4,000,000 parameters)" in page
    assert (
        "the seed of the best configuration (marked best on the leaderboard) with the best val acc tta, with TTA flip"
        in page
    )
    assert "<dt>cifarbudget version</dt>" in page and "<dt>generated at</dt>" in page
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

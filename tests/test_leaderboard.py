"""Leaderboards: loading run records, seeds -> mean/std/CI, what is ranked, Pareto, ablation, formats.

Synthetic ``result.json`` records (valid against the shipped schema) written by :func:`make_record`;
every expected number below is worked out by hand from the accuracies in :data:`GRID`.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from records import GRID, MODELS, T1, T2, grid_records, make_record, unranked_records, write_records

from cifarbudget import leaderboard as lb
from cifarbudget.results import validate_result

Invoke = Callable[..., Result]


@pytest.fixture
def grid_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    write_records(folder, grid_records())
    return folder


@pytest.fixture
def mixed_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    write_records(folder, grid_records() + unranked_records())
    return folder


def board_of(folder: Path) -> pd.DataFrame:
    runs, warnings = lb.load_results(folder)
    assert warnings == []
    return lb.leaderboard(runs)


def row(board: pd.DataFrame, model: str, augs: str, sched: str, tta: str) -> pd.Series:
    hit = board[
        (board["model"] == model)
        & (board["augs"] == augs)
        & (board["sched"] == sched)
        & (board["tta"] == tta)
    ]
    assert len(hit) == 1
    return hit.iloc[0]


# --- records and loading -------------------------------------------------------------------------
def test_synthetic_records_match_the_schema() -> None:
    for record in grid_records() + unranked_records():
        validate_result(record)


def test_load_results_one_flat_row_per_run(grid_dir: Path) -> None:
    runs, warnings = lb.load_results([grid_dir])
    assert warnings == []
    assert len(runs) == 8
    assert runs["run_id"].is_unique
    assert set(runs["augs"]) == {"crop-flip", "crop-flip+cutout"}
    first = runs[(runs["model"] == "resnet20") & (runs["seed"] == 2) & (runs["tta"] == "flip")].iloc[0]
    assert first["test_acc"] == 0.80
    assert first["test_acc_tta"] == 0.815
    assert first["params"] == 269_722
    assert first["inference_macs_tta"] == 2 * 40_551_040
    assert first["train_seconds"] == 23.0
    assert first["path"].endswith("result.json")
    # seeds of one configuration share its config_id; configurations differ
    assert runs.groupby("config_id")["seed"].apply(sorted).tolist() == [[1, 2]] * 4


def test_cpu_runs_name_their_cpu_family_and_model() -> None:
    """Two VMs that both say ``AMD EPYC`` ran the track at 2x different speeds: a record's
    ``manifest.cpu`` keeps them apart in the leaderboard (and the report's devices)."""
    record = make_record()
    assert lb.flatten_result(record)[0]["device_name"] == "test cpu"  # records without manifest.cpu
    record["manifest"].update(device_name="AMD EPYC (2 threads)", cpu={"family": "25", "model": "17"})
    assert lb.flatten_result(record)[0]["device_name"] == "AMD EPYC (2 threads; family 25 model 17)"
    record["manifest"].update(device="cuda:0", device_name="NVIDIA H200")  # a GPU run: the GPU's name
    assert lb.flatten_result(record)[0]["device_name"] == "NVIDIA H200"


# --- aggregation ---------------------------------------------------------------------------------
def test_four_configurations_of_two_seeds(grid_dir: Path) -> None:
    board = board_of(grid_dir)
    assert len(board) == 4
    assert board["n"].tolist() == [2, 2, 2, 2]
    assert board["seeds"].tolist() == ["1,2"] * 4
    # ranked by mean test accuracy: 0.835, 0.81, 0.805, 0.76
    assert board["rank"].tolist() == [1, 2, 3, 4]
    assert board["test_acc_mean"].tolist() == pytest.approx([0.835, 0.81, 0.805, 0.76], abs=1e-12)

    # two seeds a, b: mean (a+b)/2, sample std |a-b|/sqrt(2), CI half-width t_{.975,1} * std / sqrt(2)
    for (model, augs, sched, tta), seeds in GRID.items():
        r = row(board, model, "+".join(augs), sched, tta)
        (a, a_tta, va, sa), (b, b_tta, vb, sb) = seeds
        std = abs(a - b) / math.sqrt(2)
        assert r["test_acc_mean"] == pytest.approx((a + b) / 2, abs=1e-9)
        assert r["test_acc_std"] == pytest.approx(std, abs=1e-9)
        assert r["test_acc_ci95"] == pytest.approx(T1 * std / math.sqrt(2), abs=1e-9)
        assert r["val_acc_mean"] == pytest.approx((va + vb) / 2, abs=1e-9)
        assert r["train_seconds_mean"] == pytest.approx((sa + sb) / 2, abs=1e-9)
        assert r["train_images_per_s_mean"] == pytest.approx((1000 / sa + 1000 / sb) / 2, abs=1e-9)
        params, macs = MODELS[model]
        assert (r["params"], r["macs"]) == (params, macs)
        if tta == "none":
            assert math.isnan(r["test_acc_tta_mean"]) and math.isnan(r["test_acc_tta_ci95"])
            assert r["inference_macs_tta"] == macs
        else:
            std_tta = abs(a_tta - b_tta) / math.sqrt(2)
            assert r["test_acc_tta_mean"] == pytest.approx((a_tta + b_tta) / 2, abs=1e-9)
            assert r["test_acc_tta_std"] == pytest.approx(std_tta, abs=1e-9)
            assert r["test_acc_tta_ci95"] == pytest.approx(T1 * std_tta / math.sqrt(2), abs=1e-9)
            assert r["inference_macs_tta"] == 2 * macs

    top = board.iloc[0]
    assert (top["model"], top["augs"], top["sched"], top["tta"]) == (
        "airnet-small",
        "crop-flip+cutout",
        "multistep",
        "flip",
    )
    # by hand: 0.83 and 0.84 -> std 0.00707106781..., CI 12.7062047 * 0.005 = 0.0635310236...
    assert top["test_acc_std"] == pytest.approx(0.007071067811865481, abs=1e-9)
    assert top["test_acc_ci95"] == pytest.approx(0.06353102368087353, abs=1e-9)


def test_three_seeds_and_one_seed(tmp_path: Path) -> None:
    accs = [0.70, 0.74, 0.75]
    write_records(
        tmp_path,
        [make_record("resnet20", s, a) for s, a in enumerate(accs, 1)]
        + [make_record("airnet-small", 7, 0.6)],
    )
    board = board_of(tmp_path)
    three, one = board.iloc[0], board.iloc[1]
    mean = 0.73
    std = math.sqrt(((0.70 - mean) ** 2 + (0.74 - mean) ** 2 + (0.75 - mean) ** 2) / 2)  # = 0.026457513...
    assert three["n"] == 3 and three["seeds"] == "1,2,3"
    assert three["test_acc_mean"] == pytest.approx(mean, abs=1e-9)
    assert three["test_acc_std"] == pytest.approx(std, abs=1e-9)
    assert three["test_acc_ci95"] == pytest.approx(T2 * std / math.sqrt(3), abs=1e-9)
    assert three["test_acc_ci95"] == pytest.approx(0.065724106077, abs=1e-9)  # sqrt(0.0007) * t / sqrt(3)
    assert one["n"] == 1 and one["test_acc_mean"] == 0.6
    assert math.isnan(one["test_acc_std"]) and math.isnan(one["test_acc_ci95"])


def test_t_quantiles() -> None:
    assert lb.t_quantile_975(1) == T1
    assert lb.t_quantile_975(2) == T2
    assert lb.t_quantile_975(30) == pytest.approx(2.0422724563, abs=1e-9)
    assert math.isnan(lb.t_quantile_975(0))
    # interpolation in 1/df beyond the table: monotone, close to the exact values, towards 1.96
    assert lb.t_quantile_975(35) == pytest.approx(2.0301079, abs=2e-4)
    assert lb.t_quantile_975(100) == pytest.approx(1.9839715, abs=2e-4)
    assert lb.t_quantile_975(10**6) == pytest.approx(1.959966, abs=1e-5)
    values = [lb.t_quantile_975(df) for df in range(1, 500)]
    assert all(x > y for x, y in itertools.pairwise(values))


def test_t_quantiles_against_mpmath() -> None:
    mpmath = pytest.importorskip("mpmath")

    def exact(df: int) -> float:
        cdf = lambda t: 1 - mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True) / 2  # noqa: E731
        return float(mpmath.findroot(lambda t: cdf(t) - mpmath.mpf("0.975"), 2))

    for df in (1, 2, 5, 17, 30, 40, 60, 120):
        assert lb.t_quantile_975(df) == pytest.approx(exact(df), rel=1e-12)
    for df in (31, 45, 80, 200, 1000):
        assert lb.t_quantile_975(df) == pytest.approx(exact(df), abs=2e-4)


# --- what is ranked ------------------------------------------------------------------------------
def test_unfinished_and_out_of_budget_runs_are_listed_apart(mixed_dir: Path) -> None:
    runs, warnings = lb.load_results(mixed_dir)
    assert warnings == [] and len(runs) == 12
    board = lb.leaderboard(runs)
    assert len(board) == 4 and board["n"].tolist() == [2, 2, 2, 2]
    assert "preactresnet18" not in set(board["model"])  # test acc 0.99, but over budget
    assert board["test_acc_mean"].max() == pytest.approx(0.835)
    left_out = lb.not_ranked(runs)
    reasons = dict(zip(left_out["status"] + ":" + left_out["model"], left_out["reason"], strict=True))
    assert reasons == {
        "diverged:resnet20": "diverged: loss became non-finite in epoch 2 (lr 1e+06); lower --lr",
        "finished:preactresnet18": "out of budget: 11,171,146 parameters, budget 5,000,000",
        "running:airnet-small": "running or killed: 2 of 3 epochs recorded",
        "failed:resnet20": "failed: CUDA out of memory",
    }


def test_cli_markdown_lists_not_ranked_runs_apart(invoke: Invoke, mixed_dir: Path) -> None:
    result = invoke(["leaderboard", str(mixed_dir)])
    assert result.exit_code == 0, result.output
    ranked, _, rest = result.stdout.partition("Not ranked (4 runs):")
    assert rest, result.stdout
    assert "preactresnet18" not in ranked and "diverged" not in ranked
    assert "out of budget: 11,171,146 parameters" in rest and "diverged: loss became non-finite" in rest
    lines = [line for line in ranked.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:8] == ["rank", "config_id", "model", "dataset", "augs", "sched", "tta", "epochs"]
    assert "lr" not in header  # the same for every ranked configuration: left out of markdown
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "1" and cells[2] == "airnet-small" and cells[4] == "crop-flip+cutout"
    assert cells[header.index("test_acc_mean")] == "0.8350"
    assert cells[header.index("test_acc_ci95")] == "0.0635"
    assert cells[header.index("params")] == "292,688"
    assert len(lines) == 2 + 4


def test_not_ranked_flag(invoke: Invoke, mixed_dir: Path) -> None:
    result = invoke(["leaderboard", str(mixed_dir), "--not-ranked", "--format", "csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert sorted(frame["status"]) == ["diverged", "failed", "finished", "running"]
    csv_result = invoke(["leaderboard", str(mixed_dir), "--format", "csv"])
    assert "4 run(s) not ranked" in csv_result.stderr
    assert "preactresnet18" not in csv_result.stdout


# --- formats -------------------------------------------------------------------------------------
def test_json_round_trips_to_the_same_frame(grid_dir: Path, tmp_path: Path) -> None:
    board = board_of(grid_dir)
    text = lb.frame_to_json(board)
    pd.testing.assert_frame_equal(lb.read_leaderboard_json(text), board, check_exact=True)
    path = tmp_path / "board.json"
    path.write_text(text)
    pd.testing.assert_frame_equal(lb.read_leaderboard_json(path), board, check_exact=True)
    # pandas reads it too (table orient)
    pd.testing.assert_frame_equal(
        pd.read_json(io.StringIO(text), orient="table", precise_float=True), board, check_exact=True
    )
    for frame in (lb.ablation(board), board.iloc[:0]):
        back = lb.read_leaderboard_json(lb.frame_to_json(frame))
        pd.testing.assert_frame_equal(back, frame, check_exact=True)


def test_cli_formats(invoke: Invoke, grid_dir: Path, tmp_path: Path) -> None:
    board = board_of(grid_dir)

    out = invoke(["leaderboard", str(grid_dir), "--format", "json"])
    assert out.exit_code == 0, out.output
    pd.testing.assert_frame_equal(lb.read_leaderboard_json(out.stdout), board, check_exact=True)

    out = invoke(["leaderboard", str(grid_dir), "--format", "csv"])
    assert out.exit_code == 0, out.output
    # the numbers read as text and parsed by Python: exactly the board's (pandas' own float parser
    # rounds the last digit in some versions)
    frame = pd.read_csv(io.StringIO(out.stdout), dtype={"test_acc_mean": str, "test_acc_ci95": str})
    assert frame.columns.tolist() == board.columns.tolist()
    for column in ("test_acc_mean", "test_acc_ci95"):
        assert [float(v) for v in frame[column]] == board[column].tolist(), column
    assert frame["config_id"].tolist() == board["config_id"].tolist()

    out = invoke(["leaderboard", str(grid_dir), "--format", "html"])
    assert out.exit_code == 0, out.output
    assert out.stdout.count("<table") == 1 and out.stdout.count("<tr") == 1 + 4
    assert "<td>0.8350</td>" in out.stdout and "<td>crop-flip+cutout</td>" in out.stdout
    rows = [re.findall(r"<td>(.*?)</td>", tr) for tr in out.stdout.split("<tr")[2:]]
    assert [r[2] for r in rows] == board["model"].tolist()
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]

    out = invoke(["leaderboard", str(grid_dir), "--format", "markdown"])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("|   rank |") and out.stdout.count("\n|") == 5
    header, rule, *_ = out.stdout.splitlines()
    names = [c.strip() for c in header.strip("|").split("|")]
    align = dict(zip(names, rule.strip("|").split("|"), strict=True))
    # numbers right-aligned, text left-aligned (GitHub renders the colons)
    assert (
        align["rank"].endswith(":") and align["test_acc_mean"].endswith(":") and align["params"].endswith(":")
    )
    assert align["model"].startswith(":") and align["augs"].startswith(":") and align["tied"].startswith(":")

    target = tmp_path / "out" / "board.json"
    out = invoke(["leaderboard", str(grid_dir), "--format", "json", "--output", str(target)])
    assert out.exit_code == 0 and out.stdout == ""
    pd.testing.assert_frame_equal(lb.read_leaderboard_json(target), board, check_exact=True)


def test_sort(invoke: Invoke, grid_dir: Path) -> None:
    out = invoke(["leaderboard", str(grid_dir), "--format", "json", "--sort", "test_acc_std", "--ascending"])
    frame = lb.read_leaderboard_json(out.stdout)
    assert frame["test_acc_std"].tolist() == sorted(frame["test_acc_std"].tolist())
    assert frame["rank"].tolist() == [1, 2, 3, 4]
    default = lb.read_leaderboard_json(invoke(["leaderboard", str(grid_dir), "--format", "json"]).stdout)
    for column in ("params", "test_acc_std"):  # another order: the same reference and the same ties
        resorted = lb.read_leaderboard_json(
            invoke(["leaderboard", str(grid_dir), "--format", "json", "--sort", column, "--ascending"]).stdout
        )
        assert dict(zip(resorted["config_id"], resorted["tied"], strict=True)) == dict(
            zip(default["config_id"], default["tied"], strict=True)
        )
    bad = invoke(["leaderboard", str(grid_dir), "--sort", "nope"])
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: cannot sort by 'nope'; columns: config_id, model, dataset")
    assert len(bad.stderr.strip().splitlines()) == 1


# --- Pareto --------------------------------------------------------------------------------------
def test_pareto_by_params_and_macs(grid_dir: Path) -> None:
    board = board_of(grid_dir)
    # resnet20 (269,722 params) best 0.805; airnet-small (292,688) best 0.835: both on the front;
    # the other configuration of each model is dominated (same size, less accurate).
    front = lb.pareto(board, by="params")
    assert front["test_acc_mean"].tolist() == pytest.approx([0.835, 0.805])
    assert front["rank"].tolist() == [1, 3]
    # by MACs airnet-small is also cheaper (21.4M vs 40.6M), so it dominates every resnet20 row
    front = lb.pareto(board, by="macs")
    assert front["rank"].tolist() == [1]


def test_pareto_ties_and_dominance() -> None:
    board = pd.DataFrame(
        {
            "rank": [1, 2, 3, 4, 5, 6],
            "params": [300, 100, 200, 200, 300, 400],
            "macs": [1, 1, 1, 1, 1, 1],
            "select_acc_mean": [0.90, 0.80, 0.85, 0.85, 0.83, 0.90],
        }
    )
    front = lb.pareto(board, by="params")
    # 300/0.83 is dominated by 200/0.85; 400/0.90 by 300/0.90; the 200/0.85 tie keeps both
    assert sorted(front["rank"]) == [1, 2, 3, 4]
    assert lb.pareto(board, by="macs")["rank"].tolist() == [1, 6]
    with pytest.raises(lb.CifarBudgetError, match="--pareto must be one of params, macs, inference-macs"):
        lb.pareto(board, by="flops")


def test_cli_pareto(invoke: Invoke, grid_dir: Path) -> None:
    out = invoke(["leaderboard", str(grid_dir), "--pareto", "params", "--format", "json"])
    assert out.exit_code == 0, out.output
    frame = lb.read_leaderboard_json(out.stdout)
    assert frame["rank"].tolist() == [1, 3]
    assert frame["model"].tolist() == ["airnet-small", "resnet20"]


# --- ablation ------------------------------------------------------------------------------------
def test_ablation_by_hand(grid_dir: Path) -> None:
    board = board_of(grid_dir)
    # the default is validation accuracy (what a choice may be based on): configuration means
    # A=0.80, B=0.83, C=0.76, D=0.795
    on_val = lb.ablation(board).set_index(["factor", "level"]).loc[("aug", "cutout")]
    assert on_val["metric"] == "val"
    assert on_val["mean_with"] == pytest.approx((0.83 + 0.795) / 2, abs=1e-9)
    assert on_val["mean_without"] == pytest.approx((0.80 + 0.76) / 2, abs=1e-9)
    assert on_val["delta"] == pytest.approx(0.0325, abs=1e-9)
    table = lb.ablation(board, metric="test").set_index(["factor", "level"])
    # configuration means: A=0.81 (cf, multistep), B=0.835 (cf+cutout, multistep, flip: tta mean 0.8525),
    # C=0.76 (cf, cosine), D=0.805 (cf+cutout, cosine, flip: tta mean 0.8175)
    cutout = table.loc[("aug", "cutout")]
    assert cutout["mean_with"] == pytest.approx((0.835 + 0.805) / 2, abs=1e-9)
    assert cutout["mean_without"] == pytest.approx((0.81 + 0.76) / 2, abs=1e-9)
    assert cutout["delta"] == pytest.approx(0.035, abs=1e-9)
    assert (cutout["combos_with"], cutout["combos_without"], cutout["runs_with"], cutout["runs_without"]) == (
        2,
        2,
        4,
        4,
    )
    crop = table.loc[("aug", "crop-flip")]
    assert crop["mean_with"] == pytest.approx(0.8025, abs=1e-9)
    assert crop["combos_without"] == 0 and math.isnan(crop["mean_without"]) and math.isnan(crop["delta"])
    cosine = table.loc[("sched", "cosine")]
    assert cosine["mean_with"] == pytest.approx(0.7825, abs=1e-9)
    assert cosine["mean_without"] == pytest.approx(0.8225, abs=1e-9)
    assert cosine["delta"] == pytest.approx(-0.04, abs=1e-9)
    assert table.loc[("sched", "multistep"), "delta"] == pytest.approx(0.04, abs=1e-9)
    flip = table.loc[("tta", "flip")]  # paired: the same two configurations with and without TTA
    assert flip["mean_with"] == pytest.approx((0.8525 + 0.8175) / 2, abs=1e-9)
    assert flip["mean_without"] == pytest.approx((0.835 + 0.805) / 2, abs=1e-9)
    assert flip["delta"] == pytest.approx(0.015, abs=1e-9)
    assert (flip["combos_with"], flip["combos_without"], flip["runs_with"]) == (2, 2, 4)
    assert list(table.index) == [
        ("aug", "crop-flip"),
        ("aug", "cutout"),
        ("sched", "cosine"),
        ("sched", "multistep"),
        ("tta", "flip"),
    ]


def test_ablation_counts_a_training_over_all_its_seeds(tmp_path: Path) -> None:
    """One training, 3 seeds, all evaluated with flip and only two with flip-shift (whose row ranks
    first): the augmentation's side holds all three seeds' accuracy, not the two of the top row."""
    records, vals = [], [0.80, 0.82, 0.50]
    for seed, v in enumerate(vals):
        r = make_record(
            "airnet-small", seed, v, val_acc=v, augs=("crop-flip", "cutout"), tta="flip", test_acc_tta=v
        )
        if seed < 2:
            r["final"]["tta_evals"]["flip-shift"] = dict(
                r["final"]["tta_evals"]["flip"], val_acc=v + 0.01, views=10
            )
        records.append(r)
    records += [make_record("airnet-small", seed, v, val_acc=v) for seed, v in enumerate([0.70, 0.72, 0.71])]
    write_records(tmp_path, records)
    board = lb.load_board([tmp_path]).ranking
    assert board.iloc[0]["tta"] == "flip-shift" and board.iloc[0]["n"] == 2  # the row the old code used
    cutout = lb.ablation(board).set_index("level").loc["cutout"]
    assert (cutout["combos_with"], cutout["runs_with"]) == (1, 3)
    assert cutout["mean_with"] == pytest.approx(sum(vals) / 3)
    assert cutout["delta"] == pytest.approx(sum(vals) / 3 - 0.71)


def test_cli_ablation(invoke: Invoke, grid_dir: Path) -> None:
    out = invoke(["leaderboard", str(grid_dir), "--ablation"])
    assert out.exit_code == 0, out.output
    line = next(line for line in out.stdout.splitlines() if "| cutout" in line)
    assert [c.strip() for c in line.strip("|").split("|")] == [
        "synthetic",
        "aug",
        "cutout",
        "val",
        "2",
        "2",
        "4",
        "4",
        "0.8125",
        "0.7800",
        "0.0325",
    ]


# --- filters -------------------------------------------------------------------------------------
def test_filters(invoke: Invoke, mixed_dir: Path, tmp_path: Path) -> None:
    def models(*args: str) -> list[str]:
        out = invoke(["leaderboard", str(mixed_dir), "--format", "json", *args])
        assert out.exit_code == 0, out.output
        return lb.read_leaderboard_json(out.stdout)["model"].tolist()

    assert models("--budget", "280k") == ["resnet20", "resnet20"]  # 269,722 < 280k <= 292,688
    assert models("--model", "air*") == ["airnet-small", "airnet-small"]
    everything = ["airnet-small", "airnet-small", "resnet20", "resnet20"]
    assert models("--model", "AIR*", "--model", "res*") == everything
    assert models("--dataset", "synthetic") == everything

    write_records(mixed_dir, [make_record("resnet20", 1, 0.5, dataset="cifar10")])
    assert models("--dataset", "cifar10") == ["resnet20"]

    for args in (["--model", "vgg*"], ["--dataset", "mnist"]):
        out = invoke(["leaderboard", str(mixed_dir), *args])
        assert out.exit_code == 1
        assert out.stderr == "Error: no runs match --dataset/--model/--tta\n"
    # --budget is the board's budget: it judges, it does not filter; every run is over 1k
    tiny = invoke(["leaderboard", str(mixed_dir), "--budget", "1k", "--not-ranked", "--format", "json"])
    assert tiny.exit_code == 0, tiny.output
    left_out = lb.read_leaderboard_json(tiny.stdout)
    finished = left_out[left_out["status"] == "finished"]
    assert len(finished) >= 5
    assert all(r.startswith("out of budget: ") and r.endswith("budget 1,000") for r in finished["reason"])
    out = invoke(["leaderboard", str(mixed_dir), "--budget", "lots"])
    assert out.exit_code == 1 and out.stderr.startswith("Error: invalid budget 'lots'")


def test_filter_runs_budget_is_strict(grid_dir: Path) -> None:
    runs, _ = lb.load_results(grid_dir)
    assert len(lb.filter_runs(runs, budget=269_722)) == 0
    assert len(lb.filter_runs(runs, budget=269_723)) == 4


# --- robustness ----------------------------------------------------------------------------------
def test_truncated_and_foreign_files_are_skipped_with_a_warning(invoke: Invoke, grid_dir: Path) -> None:
    bad = write_records(grid_dir, [make_record("resnet20", 9, 0.99)])[0]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated mid-write
    foreign = grid_dir / "other-tool" / "result.json"
    foreign.parent.mkdir()
    foreign.write_text('{"accuracy": 0.99}')
    listing = grid_dir / "a-list" / "result.json"
    listing.parent.mkdir()
    listing.write_text("[1, 2]")
    no_params = make_record("resnet20", 8, 0.99)
    no_params["budget"]["params"] = None  # a hand-edited or foreign record: every verdict reads it
    (no_params_path,) = write_records(grid_dir, [no_params])

    runs, warnings = lb.load_results(grid_dir)
    assert len(runs) == 8
    assert len(warnings) == 4
    assert f"skipped {no_params_path}: 'budget.params' is not a number of parameters (None)" in warnings
    assert any(w.startswith(f"skipped {bad}: corrupt or truncated JSON") for w in warnings)
    assert f"skipped {foreign}: not a cifarbudget result (schema None)" in warnings
    assert f"skipped {listing}: not a JSON object" in warnings

    out = invoke(["leaderboard", str(grid_dir), "--format", "json"])
    assert out.exit_code == 0
    assert str(bad) in out.stderr and out.stderr.count("warning: skipped") == 4
    board = lb.read_leaderboard_json(out.stdout)
    assert len(board) == 4 and board["test_acc_mean"].max() == pytest.approx(0.835)


def test_val_size_and_num_classes_are_what_the_run_had(tmp_path: Path) -> None:
    record = make_record("resnet20", 1, 0.7)
    record["spec"]["val_size"], record["spec"]["num_classes"] = 5000, 0  # the defaults: asked, not had
    record["data"]["n_val"], record["budget"]["num_classes"] = 600, 10
    write_records(tmp_path, [record])
    runs, _ = lb.load_results(tmp_path)
    assert (runs.loc[0, "val_size"], runs.loc[0, "num_classes"]) == (600, 10)
    assert json.loads(runs.loc[0, "spec_json"])["val_size"] == 5000  # the rerun command asks as the run did


def test_a_run_in_two_folders_counts_once(tmp_path: Path) -> None:
    record = make_record("resnet20", 1, 0.7)
    write_records(tmp_path / "a", [record])
    write_records(tmp_path / "b", [record, make_record("resnet20", 2, 0.8)])
    runs, warnings = lb.load_results([tmp_path / "a", tmp_path / "b"])
    assert len(runs) == 2
    assert len(warnings) == 1 and f"run {record['run_id']} already read from" in warnings[0]
    assert lb.leaderboard(runs)["n"].tolist() == [2]


def test_no_results_is_a_one_line_error(invoke: Invoke, tmp_path: Path) -> None:
    out = invoke(["leaderboard", str(tmp_path)])
    assert out.exit_code == 1
    assert out.stderr == f"Error: no run results found in {tmp_path}\n"
    missing = tmp_path / "nope"
    out = invoke(["leaderboard", str(missing)])
    assert out.exit_code == 1
    assert out.stderr == (
        f"warning: no such file or folder: {missing}\nError: no run results found in {missing}\n"
    )


def test_only_unranked_runs(invoke: Invoke, tmp_path: Path) -> None:
    write_records(tmp_path, unranked_records())
    runs, _ = lb.load_results(tmp_path)
    assert lb.leaderboard(runs).empty
    out = invoke(["leaderboard", str(tmp_path)])
    assert out.exit_code == 0
    assert out.stdout.startswith("(no rows)\n\nNot ranked (4 runs):")


def test_help_has_examples(invoke: Invoke) -> None:
    out = invoke(["leaderboard", "--help"])
    assert out.exit_code == 0
    assert "Examples:\n    cifarbudget leaderboard\n" in out.stdout
    assert "--pareto [params|macs|inference-macs]" in out.stdout


def test_real_run_record(invoke: Invoke, tmp_path: Path) -> None:
    """A record written by a real (tiny) training run goes through the whole pipeline."""
    out = invoke(
        [
            "run",
            "airnet-small",
            "--dataset",
            "synthetic",
            "--train-subset",
            "128",
            "--epochs",
            "1",
            "--val-size",
            "64",
            "--batch-size",
            "64",
            "--quiet",
            "--device",
            "cpu",
            "--results-dir",
            str(tmp_path),
            "--seed",
            "5",
        ]
    )
    assert out.exit_code == 0, out.output
    record = json.loads(next(tmp_path.rglob("result.json")).read_text())
    runs, warnings = lb.load_results(tmp_path)
    assert warnings == []
    board = lb.leaderboard(runs)
    assert len(board) == 1
    top = board.iloc[0]
    assert top["test_acc_mean"] == record["final"]["test_acc"]
    assert top["params"] == record["budget"]["params"] == MODELS["airnet-small"][0]
    assert top["train_seconds_mean"] == record["timing"]["train_seconds"]
    assert top["config_id"] == runs.iloc[0]["config_id"]


def test_parallel_reading_gives_the_same_frame(mixed_dir: Path) -> None:
    bad = write_records(mixed_dir, [make_record("resnet20", 9, 0.5)])[0]
    bad.write_text("{")
    serial, serial_warnings = lb.load_results(mixed_dir, workers=1)
    parallel, parallel_warnings = lb.load_results(mixed_dir, workers=2)
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)
    assert parallel_warnings == serial_warnings and len(serial_warnings) == 1


# --- honest ranking: validation, ties, datasets ----------------------------------------------------
def test_ranks_by_validation_marks_ties_and_one_seed_rows(tmp_path: Path) -> None:
    """Configurations with known validation means and spreads; the test accuracy is ordered the
    other way round, so a ranking by test would be visibly different."""
    configs = {  # (model, sched): [(val, test), ...]
        ("airnet-small", "multistep"): [(0.80, 0.70), (0.82, 0.70), (0.81, 0.70)],  # val mean .81, std .01
        ("airnet-small", "cosine"): [
            (0.79, 0.75),
            (0.81, 0.75),
            (0.80, 0.75),
        ],  # .80: Welch t 1.22 < t(4) 2.78
        ("resnet20", "multistep"): [(0.70, 0.90), (0.71, 0.90), (0.72, 0.90)],  # .71: t 13.5, not tied
        ("resnet20", "cosine"): [(0.805, 0.95)],  # one seed: untestable
    }
    records = [
        make_record(model, seed, test, sched=sched, val_acc=val)
        for (model, sched), runs in configs.items()
        for seed, (val, test) in enumerate(runs)
    ]
    records.append(make_record("airnet-small", 0, 0.99, sched="onecycle", val_split=False))  # no validation
    write_records(tmp_path, records)
    board = lb.leaderboard(lb.load_results(tmp_path)[0])
    by_val = board[board["selected_on"] == "val"]
    assert list(zip(by_val["model"], by_val["sched"], strict=True)) == [
        ("airnet-small", "multistep"),
        ("resnet20", "cosine"),
        ("airnet-small", "cosine"),
        ("resnet20", "multistep"),
    ]
    assert by_val["select_acc_mean"].tolist() == pytest.approx([0.81, 0.805, 0.80, 0.71])
    assert by_val["tied"].tolist() == ["best", "n=1", "tied", ""]
    assert by_val["one_seed"].tolist() == [False, True, False, False]
    # Welch's statistic for the cosine row, by hand: |0.81 - 0.80| / sqrt(2 * 0.01^2 / 3), df = 4
    welch_t = 0.01 / math.sqrt(2 * 0.01**2 / 3)
    assert welch_t == pytest.approx(1.2247, abs=1e-4) and welch_t < lb.t_quantile_975(4)
    (no_val,) = board[board["selected_on"] == "test"].itertuples()
    assert no_val.sched == "onecycle" and no_val.select_acc_mean == 0.99  # ranked by test, and marked
    assert no_val.rank == 5  # not above the validated rows: 0.99 test is not comparable with validation


def test_a_one_seed_row_above_the_rest_is_not_the_best(tmp_path: Path) -> None:
    """A lucky single seed ranks by its mean but is marked n=1; the first row with seeds to test
    is the reference that ties are judged against."""
    configs = {
        ("resnet20", "cosine"): [0.90],  # one seed, highest mean
        ("airnet-small", "multistep"): [0.80, 0.82, 0.81],
        ("airnet-small", "cosine"): [0.79, 0.81, 0.80],  # tied with multistep (t 1.22)
        ("resnet20", "multistep"): [0.70, 0.71, 0.72],  # not tied
    }
    records = [
        make_record(model, seed, 0.5, sched=sched, val_acc=val)
        for (model, sched), vals in configs.items()
        for seed, val in enumerate(vals)
    ]
    write_records(tmp_path, records)
    board = lb.leaderboard(lb.load_results(tmp_path)[0])
    assert list(zip(board["model"], board["sched"], board["tied"], strict=True)) == [
        ("resnet20", "cosine", "n=1"),
        ("airnet-small", "multistep", "best"),
        ("airnet-small", "cosine", "tied"),
        ("resnet20", "multistep", ""),
    ]
    assert board["rank"].tolist() == [1, 2, 3, 4]


def test_min_seeds_ranks_only_configurations_with_enough_finished_seeds(
    invoke: Invoke, tmp_path: Path
) -> None:
    """What a study pruned after one seed leaves: a lucky one-seed configuration, and one whose
    second seed failed. ``--min-seeds 2`` ranks the complete ones and says why the others are not."""
    records = [make_record("resnet20", 0, 0.5, sched="cosine", val_acc=0.90)]  # one seed, highest mean
    records += [
        make_record("resnet20", s, 0.5, sched="multistep", val_acc=v) for s, v in enumerate([0.8, 0.82])
    ]
    records += [
        make_record("airnet-small", 0, 0.5, sched="cosine", val_acc=0.95),
        make_record("airnet-small", 1, None, sched="cosine", status="failed", error="boom"),
    ]
    write_records(tmp_path, records)
    plain = lb.load_board([tmp_path])
    assert plain.ranking["select_acc_mean"].tolist() == pytest.approx([0.95, 0.90, 0.81])

    loaded = lb.load_board([tmp_path], min_seeds=2)
    assert list(zip(loaded.ranking["model"], loaded.ranking["sched"], strict=True)) == [
        ("resnet20", "multistep")
    ]
    assert loaded.ranking["n"].tolist() == [2]
    reasons = dict(zip(loaded.not_ranked["run_id"], loaded.not_ranked["reason"], strict=True))
    assert sorted(reasons.values()) == [
        "failed: boom",
        "too few seeds: 1 of its configuration finished, --min-seeds 2",
        "too few seeds: 1 of its configuration finished, --min-seeds 2",
    ]
    assert lb.load_board([tmp_path], min_seeds=1).ranking.equals(plain.ranking)

    result = invoke(["leaderboard", str(tmp_path), "--min-seeds", "2"])
    assert result.exit_code == 0, result.output
    assert "Not ranked (3 runs)" in result.output and "--min-seeds 2" in result.output
    result = invoke(["leaderboard", str(tmp_path), "--min-seeds", "0"])
    assert result.exit_code == 2 and "--min-seeds" in result.output


def test_each_dataset_has_its_own_ranking(tmp_path: Path) -> None:
    write_records(
        tmp_path,
        [make_record("resnet20", s, 0.6 + s / 100, dataset="cifar10") for s in range(2)]
        + [make_record("airnet-small", s, 0.9, dataset="synthetic") for s in range(2)],
    )
    board = lb.leaderboard(lb.load_results(tmp_path)[0])
    assert list(zip(board["dataset"], board["rank"], board["tied"], strict=True)) == [
        ("cifar10", 1, "best"),
        ("synthetic", 1, "best"),
    ]
    front = lb.pareto(board, by="params")
    assert sorted(front["dataset"]) == ["cifar10", "synthetic"]  # one front per dataset


def test_inference_macs_pareto_counts_tta_views(tmp_path: Path) -> None:
    write_records(
        tmp_path,
        [make_record("airnet-small", s, 0.80, tta="flip", test_acc_tta=0.82, val_acc=0.80) for s in range(2)]
        + [make_record("resnet20", s, 0.79, val_acc=0.79) for s in range(2)],
    )
    board = lb.leaderboard(lb.load_results(tmp_path)[0])
    air = board[board["model"] == "airnet-small"].iloc[0]
    assert air["inference_macs_tta"] == 2 * MODELS["airnet-small"][1]  # 2 views x 21.4M
    by_params = lb.pareto(board, by="params")  # airnet-small: more params, more accurate: both
    by_inference = lb.pareto(board, by="inference-macs")  # 42.9M vs 40.6M: both, the flip view is not free
    assert len(by_params) == 2 and len(by_inference) == 2
    assert lb.pareto(board, by="macs")["model"].tolist() == ["airnet-small"]  # single-view MACs hide TTA


def test_a_run_trained_over_the_default_budget_is_not_ranked_by_default(
    invoke: Invoke, tmp_path: Path
) -> None:
    """Issue 8: `run preactresnet18 --budget 12M --allow-over-budget` trains (a real run), but the
    default board (5M) and the report judge it against their own budget and list it apart."""
    runs = tmp_path / "runs"
    tiny = ["--dataset", "synthetic", "--train-subset", "128", "--val-size", "64", "--epochs", "1"]
    tiny += ["--batch-size", "64", "--results-dir", str(runs), "--quiet"]
    trained = invoke(["run", "preactresnet18", "--budget", "12M", "--allow-over-budget", *tiny])
    assert trained.exit_code == 0, trained.output
    small = invoke(["run", "resnet20", *tiny])
    assert small.exit_code == 0, small.output

    board = invoke(["leaderboard", str(runs), "--format", "csv"])
    assert board.exit_code == 0, board.output
    assert list(pd.read_csv(io.StringIO(board.stdout))["model"]) == ["resnet20"]
    left_out = invoke(["leaderboard", str(runs), "--not-ranked", "--format", "csv"])
    (row,) = pd.read_csv(io.StringIO(left_out.stdout)).to_dict("records")
    assert row["model"] == "preactresnet18"
    assert row["reason"] == "out of budget: 11,171,146 parameters, budget 5,000,000"
    # ranked on a board whose budget admits it
    wide = invoke(["leaderboard", str(runs), "--budget", "12M", "--format", "csv"])
    assert set(pd.read_csv(io.StringIO(wide.stdout))["model"]) == {"preactresnet18", "resnet20"}

    page = tmp_path / "report.html"
    report = invoke(["report", str(runs), "-o", str(page)])
    assert report.exit_code == 0, report.output
    html = page.read_text()
    ranking = html.split("<h2>Leaderboard</h2>")[1].split("<h2>")[0]
    assert "preactresnet18" not in ranking and "resnet20" in ranking
    assert "out of budget: 11,171,146 parameters, budget 5,000,000" in html


def test_tracker_stores_hidden_folders_and_run_subfolders_are_not_searched(tmp_path: Path) -> None:
    run = tmp_path / "run-a"
    for folder in (run, run / "tensorboard" / "nested", tmp_path / "mlruns" / "1" / "abc" / "artifacts"):
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("{}")
    (tmp_path / ".locks").mkdir()
    (tmp_path / ".locks" / "result.json").write_text("{}")
    files, warnings = lb.find_result_files([tmp_path])
    assert files == [run / "result.json"] and warnings == []


def test_runs_on_different_data_of_one_dataset_are_ranked_apart(tmp_path: Path) -> None:
    """Two image folders (a 3-class toy and CIFAR-10, say) are both ``imagefolder``: their test sets
    differ, so their accuracies are ranked, fronted and ablated apart, each group named by its data."""
    records = []
    for data, accs in (("aaaaaaaa11112222", (0.99, 0.98)), ("bbbbbbbb33334444", (0.61, 0.62))):
        for seed, acc in enumerate(accs, 1):
            for model in ("resnet20", "airnet-small"):
                acc_of_model = acc - (0.05 if model == "resnet20" else 0)
                records.append(make_record(model, seed, acc_of_model, dataset="imagefolder", data_id=data))
    write_records(tmp_path, records)
    runs, _ = lb.load_results(tmp_path)
    board = lb.leaderboard(runs)
    keys = lb.comparable_key(board).tolist()
    assert sorted(set(keys)) == ["imagefolder (data aaaaaaaa)", "imagefolder (data bbbbbbbb)"]
    for key in set(keys):
        part = board[[k == key for k in keys]]
        assert part["rank"].tolist() == [1, 2] and part["model"].tolist() == ["airnet-small", "resnet20"]
        assert part["tied"].tolist()[0] == "best"
    front = lb.pareto(board)  # one front per data (both models are on each): not the toy's alone
    assert sorted(lb.comparable_key(front).tolist()) == sorted(keys) and len(front) == 4
    ablation = lb.ablation(board)
    assert set(ablation["dataset"]) == set(keys)
    # one data id: the key is the dataset alone, as before
    assert set(lb.comparable_key(board[[k.endswith("aaaaaaaa)") for k in keys]])) == {"imagefolder"}

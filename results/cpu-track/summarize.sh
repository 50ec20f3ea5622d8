#!/usr/bin/env bash
# Tables and the report of the CPU compute track, from the run folders in results/cpu-track/runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=results/cpu-track/runs
OUT=results/cpu-track
cifarbudget leaderboard "$RUNS" --compute-budget 30T -o "$OUT/leaderboard.md"
cifarbudget leaderboard "$RUNS" --compute-budget 30T --json -o "$OUT/leaderboard.json"
cifarbudget leaderboard "$RUNS" --compute-budget 30T --ablation -o "$OUT/ablation.md"
cifarbudget leaderboard "$RUNS" --compute-budget 30T --ablation --ablation-on test -o "$OUT/ablation-test.md"
cifarbudget report "$RUNS" --compute-budget 30T -o "$OUT/report.html"

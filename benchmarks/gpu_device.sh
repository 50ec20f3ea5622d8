#!/usr/bin/env bash
# Runs benchmarks/gpu_suite.py on a lent GPU machine, from a copy of the repository that carries
# .data/ and .wheels/ (made here by benchmarks/gpu_prepare.sh), and leaves its figures in $OUT:
#
#     bash benchmarks/gpu_device.sh GIT_REVISION [suite options...]
#
# e.g. `bash benchmarks/gpu_device.sh "$(git rev-parse HEAD)" --budget-seconds 480` (add +dirty when
# the copied tree has uncommitted code, as cifarbudget.results.git_revision would). The revision goes
# into suite.json and, through $CIFARBUDGET_GIT_REVISION, into every run's result.json. The suite
# writes suite.json and README.md into $OUT on every save (--mirror), and runs under `timeout`
# ending 25 s before the tool's own limit for the command ($GPU_CALL_SECONDS, default 600: the
# timeout_s given to the tool), so the copies below still run; without --budget-seconds it gets
# what is left minus 60 s (a margin for its estimates: a part starts only when its estimated
# start-up and first epochs fit, but a guess can be short). The machine's
# python3 has PyTorch; the carried wheels are installed into /tmp/site (no network, no index) and a
# failed import stops the script at once, before any GPU time goes to the suite. The suite writes
# into /tmp/gpu-suite; $OUT receives suite.json, README.md, the log, and runs.tar.gz (every run's
# result.json and metrics.csv; no checkpoints), since the tool returns at most 8 files and no
# folder deeper than two levels. Copy them to results/gpu/<date>/ here.
set -uo pipefail
revision=${1:?usage: gpu_device.sh GIT_REVISION [suite options...]}
shift
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
shopt -s nullglob
wheels=(.wheels/*.whl)
if ((${#wheels[@]} == 0)); then
    echo "gpu_device: no wheels in .wheels/ (run benchmarks/gpu_prepare.sh here, carry .data and .wheels)" >&2
    exit 3
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}" \
    || { echo "gpu_device: installing the carried wheels failed" >&2; exit 3; }
# the tree's code first (the carried wheel of this library gives its metadata, and may be older)
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
python3 - <<'EOF' || exit 3
import importlib, sys
missing = []
for name in ("torch", "torchvision", "timm", "pluggy", "torchinfo", "fvcore.nn", "pandas", "click",
             "jsonschema", "filelock", "tqdm", "matplotlib", "tabulate", "PIL", "cifarbudget"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # one line per missing library, then stop
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
if missing:
    sys.exit("gpu_device: cannot import " + "; ".join(missing))
import torch, cifarbudget
print(f"gpu_device: cifarbudget {cifarbudget.__version__} from {cifarbudget.__file__}, torch {torch.__version__}, "
      f"cuda {torch.cuda.is_available()} ({torch.cuda.get_device_name() if torch.cuda.is_available() else '-'})")
EOF
limit=${GPU_CALL_SECONDS:-600}
left=$((limit - SECONDS - 25))
budget=()
[[ " $* " == *" --budget-seconds "* ]] || budget=(--budget-seconds "$((left - 60))")
echo "gpu_device: ${SECONDS} s spent before the suite; it gets ${left} s at most" >&2
timeout -s TERM -k 10 "$left" python3 benchmarks/gpu_suite.py --data-dir .data --out /tmp/gpu-suite \
    --mirror "$out" --git-revision "$revision" ${budget[@]+"${budget[@]}"} "$@" 2>&1 | tee "$out/log.txt"
status=${PIPESTATUS[0]}
cp /tmp/gpu-suite/suite.json /tmp/gpu-suite/README.md "$out/" 2>/dev/null
(cd /tmp/gpu-suite && find . \( -name result.json -o -name metrics.csv \) -print0 \
    | tar --null -czf "$out/runs.tar.gz" -T -) 2>/dev/null
exit "$status"

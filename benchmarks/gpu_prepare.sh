#!/usr/bin/env bash
# Prepares a run of benchmarks/gpu_suite.py on a lent GPU machine that has Python 3.12 and PyTorch
# but no network (docs/performance.md, "Running it on a GPU machine without network access"). Run
# it here, in the repository, with network access to the package index:
#
#     bash benchmarks/gpu_prepare.sh [DATA_DIR]      # DATA_DIR: ../shared/data by default
#
# It writes two ignored folders that travel with the repository to the GPU machine:
#   .data/    the two CIFAR-10 JPEG zips (61 MiB), copied from DATA_DIR and checked against its SHA256SUMS
#   .wheels/  this library as a wheel (its entry points and version) and the wheels of the
#             libraries it imports that the machine's image lacks (torchinfo, fvcore and its
#             dependencies, jsonschema and its dependencies), built or downloaded for CPython 3.12
#             on manylinux x86-64, each pinned to the version the tests here use.
# Then it prints the size of what will travel: the lending tool sends the working tree (tracked and
# untracked-not-ignored files) plus the carried folders, 64 MiB at most, and the data alone is
# 61 MiB, so the tree must shrink for the call (results/, docs/ and tests/ are not needed there):
#
#     git sparse-checkout set --no-cone '/*' '!/results/' '!/docs/' '!/tests/'   # before the call
#     git sparse-checkout disable                                               # after it
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
data_dir=${1:-../shared/data}
python=${PYTHON:-python}

# What the lent machine's image has (its package list as read on 2026-11-17) and
# what must travel: every runtime dependency in pyproject.toml is in one list or the other
# (tests/test_gpu_suite.py checks it). The wheels are pinned to the versions the tests run here.
image_has=(torch torchvision timm pluggy pandas click tabulate matplotlib tqdm pillow numpy filelock
    pyyaml portalocker attrs typing-extensions)
pure_sdists=(fvcore==0.1.5.post20221221 iopath==0.1.10)           # published as source only
wheels=(torchinfo==1.8.0 yacs==0.1.8 termcolor==3.3.0 jsonschema==4.26.0
    jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1)

for zip in cifar10-jpeg-train.zip cifar10-jpeg-test.zip; do
    [[ -f "$data_dir/$zip" ]] || { echo "gpu_prepare: $data_dir/$zip not found" >&2; exit 2; }
done
rm -rf .wheels .data
mkdir -p .wheels .data
cp "$data_dir"/cifar10-jpeg-train.zip "$data_dir"/cifar10-jpeg-test.zip .data/
if [[ -f "$data_dir/SHA256SUMS" ]]; then  # the copies are the files the data README lists
    sums=$(realpath "$data_dir/SHA256SUMS")
    (cd .data && grep -E 'cifar10-jpeg-(train|test)\.zip' "$sums" | sha256sum --check --quiet -)
fi

"$python" -m pip wheel -q --no-deps --no-build-isolation -w .wheels . "${pure_sdists[@]}"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .wheels "${wheels[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

echo "wheels:"
ls -1 .wheels
tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry_bytes=$(du -cb .data .wheels | tail -1 | cut -f1)
echo "working tree $((tree_bytes / 1024)) KiB + carried $((carry_bytes / 1024)) KiB = $(((tree_bytes + carry_bytes) / 1048576)) MiB (limit 64 MiB)"

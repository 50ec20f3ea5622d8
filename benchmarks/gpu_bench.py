"""The GPU measurement, in one command: training throughput of ResNetSmall on one GPU, and
(optionally) the full ``paper-initial`` run on the JPEG CIFAR-10 copy.

    python benchmarks/gpu_bench.py --epochs 3 [--full-run --data-dir DIR]

Throughput is measured with the cifarbudget engine itself (crop-flip on the device, batch 128 as
in the paper, and batch 512), as steady-state training images/s over whole epochs after a
warm-up epoch, for three settings on the same card in the same process: eager fp32 (TF32
matmuls and convolutions allowed, as ``cifarbudget run`` does on CUDA; ``--no-tf32`` for strict
fp32), bf16 autocast + channels_last, and the same plus ``torch.compile``. The engine-overhead
ratio comes from ``reference_loop.py``: the engine and a minimal hand-written loop, epoch for
epoch in alternation, with bf16 + channels_last, the same model, batches and optimiser, and no
augmentation on either side. Results go to ``<out>/gpu_throughput.json`` (default
``results/gpu/``) with the machine's provenance, rewritten atomically after every batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from reference_loop import MEAN, STD, EngineVsHandwritten, alternate, build_engine, median, random_split

from cifarbudget.api import create_model
from cifarbudget.augment.batch import CropFlip
from cifarbudget.augment.pipeline import Compose
from cifarbudget.data.core import DeviceSplit
from cifarbudget.device import DeviceSettings
from cifarbudget.io import atomic_write_json
from cifarbudget.results import manifest


def engine_throughput(
    model_name: str,
    batch: int,
    n_images: int,
    epochs: int,
    *,
    amp: bool,
    cl: bool,
    compile: bool,
    device: torch.device,
) -> float:
    """Training images/s of the engine: the mean over the epochs after the first (warm-up)."""
    torch.manual_seed(0)
    split = random_split(n_images)
    settings = DeviceSettings(device=device, amp=amp, channels_last=cl, compile=compile)
    data = DeviceSplit.from_split(split, device, MEAN, STD, cl)
    engine = build_engine(
        create_model(model_name),
        data,
        Compose([CropFlip()], normalize=data.normalize),
        settings,
        Path(tempfile.gettempdir()) / "gpu-bench-unused",
        epochs=epochs,
        batch_size=batch,
    )
    engine.save_checkpoint = lambda: None  # type: ignore[method-assign]  # measure training, not disk
    state = engine.fit()
    rates = [h["images_per_s"] for h in state.history[1:]]
    return sum(rates) / len(rates)


def engine_over_handwritten(
    model_name: str, batch: int, n_images: int, epochs: int, *, device: torch.device, workdir: Path
) -> dict[str, float]:
    """Engine vs. hand-written loop (bf16 + channels_last, no augmentation), alternating epochs."""
    pair = EngineVsHandwritten(
        model_name,
        batch_size=batch,
        steps=n_images // batch,
        device=device,
        workdir=workdir,
        amp=True,
        channels_last=True,
    )
    engine, hand = alternate(pair.engine_epoch, pair.handwritten_epoch, rounds=max(1, epochs - 1), warmup=1)
    return {
        "engine_images_per_s": median(engine),
        "handwritten_images_per_s": median(hand),
        "ratio": median([e / h for e, h in zip(engine, hand, strict=True)]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("results/gpu"))
    parser.add_argument("--model", default="resnetsmall")
    parser.add_argument("--images", type=int, default=25_600, help="images per timed epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per setting (the first is warm-up)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-tf32", action="store_true", help="strict fp32 (the run enables TF32 on CUDA)")
    parser.add_argument("--data-dir", type=Path, help="ImageFolder data for --full-run")
    parser.add_argument(
        "--full-run", action="store_true", help="also run the paper-initial recipe end to end"
    )
    parser.add_argument("--full-run-compile", action="store_true")
    parser.add_argument(
        "--full-run-val-size",
        type=int,
        default=0,
        help="validation images held out in the full run (0: all 50,000 train, the paper's protocol)",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("this script measures a CUDA GPU; none is available")
    if args.full_run and args.data_dir is None:
        parser.error("--full-run needs --data-dir (a folder with cifar10-jpeg-train.zip and -test.zip)")
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True  # as cifarbudget.device.configure_backends sets them on CUDA
    torch.backends.cuda.matmul.allow_tf32 = not args.no_tf32
    torch.backends.cudnn.allow_tf32 = not args.no_tf32
    path = args.out / "gpu_throughput.json"
    out = {
        "command": "python benchmarks/gpu_bench.py " + " ".join(sys.argv[1:]),
        "manifest": manifest(device, 0),
        "model": args.model,
        "images_per_epoch": args.images,
        "epochs_per_setting": args.epochs,
        "tf32": not args.no_tf32,
        "throughput": [],
    }
    settings = [("eager fp32", False, False, False), ("bf16 + channels_last", True, True, False)]
    if not args.no_compile:
        settings.append(("bf16 + channels_last + compile", True, True, True))
    for batch in (128, 512):
        base = None
        for label, amp, cl, comp in settings:
            t = time.perf_counter()
            rate = engine_throughput(
                args.model, batch, args.images, args.epochs, amp=amp, cl=cl, compile=comp, device=device
            )
            base = base or rate
            row = {
                "batch": batch,
                "setting": label,
                "images_per_s": round(rate, 1),
                "ratio_vs_eager_fp32": round(rate / base, 3),
                "wall_s": round(time.perf_counter() - t, 1),
            }
            out["throughput"].append(row)
            print(json.dumps(row), flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            pair = engine_over_handwritten(
                args.model, batch, args.images, args.epochs, device=device, workdir=Path(workdir)
            )
        row = {
            "batch": batch,
            "setting": "hand-written loop vs. engine, both bf16 + channels_last, no augmentation",
            "images_per_s": round(pair["handwritten_images_per_s"], 1),
            "engine_images_per_s": round(pair["engine_images_per_s"], 1),
            "engine_over_handwritten": round(pair["ratio"], 3),
        }
        out["throughput"].append(row)
        print(json.dumps(row), flush=True)
        atomic_write_json(path, out)
    if args.full_run:
        import cifarbudget

        t = time.perf_counter()
        result = cifarbudget.run(
            recipe="paper-initial",
            dataset="imagefolder",
            data_dir=args.data_dir,
            results_dir=args.out / "runs",
            compile=args.full_run_compile,
            val_size=args.full_run_val_size,
            progress=False,
        )
        out["full_run"] = {
            "recipe": "paper-initial",
            "dataset": "CIFAR-10 (JPEG q75 copy)",
            "val_size": args.full_run_val_size,
            "run_id": result.run_id,
            "status": result.status,
            "val_acc": result.val_acc,
            "test_acc": result.test_acc,
            "train_seconds": result.timing.get("train_seconds"),
            "train_images_per_s": result.timing.get("train_images_per_s"),
            "wall_s": round(time.perf_counter() - t, 1),
        }
        print(json.dumps(out["full_run"]), flush=True)
    atomic_write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

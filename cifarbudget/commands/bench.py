"""``cifarbudget bench``: training and inference throughput of models on this machine."""

from __future__ import annotations

import click

from cifarbudget.commands.common import (
    deprecated_alias,
    deprecated_value,
    echo_json,
    expand_model_patterns,
    json_option,
    num_classes_option,
    table,
    user_errors,
)


@click.command("bench")
@click.argument("models", nargs=-1, required=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Images per step, training and inference [default: 256 on a GPU, 64 on the CPU].",
)
@click.option("--amp/--no-amp", default=None, help="bf16 autocast [default: on for CUDA].")
@click.option("--channels-last/--no-channels-last", default=None, help="[default: on for CUDA and CPU].")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (warm-up compiles).")
@click.option("--device", default=None, help="cuda, mps or cpu [default: the best available].")
@click.option(
    "--warmup-steps",
    "warmup",
    type=click.IntRange(min=0),
    help="Untimed steps first [default: 10 on a GPU, 2 on the CPU].",
)
@deprecated_alias("--warmup", "--warmup-steps", "warmup", type=click.IntRange(min=0))
@click.option("--steps", type=click.IntRange(min=1), help="Timed steps [default: 40 on a GPU, 5 on the CPU].")
@num_classes_option()
@json_option("Print a JSON list instead of a table.")
@user_errors
def command(
    models: tuple[str, ...],
    batch_size: int | None,
    amp: bool | None,
    channels_last: bool | None,
    compile_: bool,
    device: str | None,
    warmup: int | None,
    steps: int | None,
    num_classes: int,
    as_json: bool,
) -> None:
    """Measure training and inference images/s, step time and peak memory of MODELS.

    Random input tensors live on the device; a training step is forward + backward + SGD step,
    an inference step a forward pass in eval mode; the timed steps are bracketed by device
    synchronisation. The budget is not enforced (parameters and MACs are reported).
    Patterns such as 'resnet*' are expanded as in 'cifarbudget check'.

    \b
    Examples:
      cifarbudget bench resnetsmall resnet20
      cifarbudget bench 'resnet*' --batch-size 512 --compile --json
    """
    from cifarbudget.bench import bench_model
    from cifarbudget.budget import format_count

    warmup = deprecated_value("warmup", warmup)
    names = expand_model_patterns(models)
    results = [
        bench_model(
            name,
            device=device,
            batch_size=batch_size,
            amp=amp,
            channels_last=channels_last,
            compile=compile_,
            warmup=warmup,
            steps=steps,
            num_classes=num_classes,
        )
        for name in names
    ]
    if as_json:
        echo_json([r.to_dict() for r in results])
        return
    rows = [
        {
            "model": r.model,
            "params": f"{r.params:,}",
            "MACs": format_count(r.macs),
            "batch": r.batch_size,
            "train img/s": f"{r.train_images_per_s:,.0f}",
            "train ms/step": f"{r.train_step_ms:.1f}",
            "eval img/s": f"{r.eval_images_per_s:,.0f}",
            "eval ms/step": f"{r.eval_step_ms:.1f}",
            "peak MiB": "n/a" if r.peak_memory_mb is None else f"{r.peak_memory_mb:,.0f}",
        }
        for r in results
    ]
    click.echo(table(rows, colalign=("left", *["right"] * 8)))
    first = results[0]
    settings = f"amp={first.amp}, channels_last={first.channels_last}, compile={first.compile}"
    click.echo(
        f"{first.device} ({first.device_name}); {settings}; "
        f"{first.warmup} warm-up + {first.steps} timed steps; memory: {first.memory_note}"
    )

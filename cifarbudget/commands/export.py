"""``cifarbudget export``: a trained run's model as safetensors, TorchScript or ONNX, checked against
PyTorch (thin over :func:`cifarbudget.export.export_run`)."""

from __future__ import annotations

from pathlib import Path

import click

from cifarbudget.commands.common import echo_json, json_option, output_option, user_errors

# the same as cifarbudget.export.FORMATS / DEFAULT_SUFFIX (not imported here: that module imports torch)
FORMATS = ("safetensors", "torchscript", "onnx")
SUFFIX = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}
_BY_SUFFIX = {".safetensors": "safetensors", ".pt": "torchscript", ".ts": "torchscript", ".onnx": "onnx"}


@click.command("export")
@click.argument("run", metavar="RUN")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="safetensors (weights + metadata), torchscript or onnx (normalisation inside) "
    "[default: from the -o suffix: .safetensors, .pt, .onnx].",
)
@output_option("The file to write (atomically) [default: <run id> with the format's suffix].")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Run the written bytes through the format's own reader (onnxruntime, torch.jit, safetensors) "
    "on the test split and compare with PyTorch: max |logit difference| < 1e-4, identical predictions.",
)
@click.option(
    "--check-images",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="How many of the test split's first images the check runs on.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    help="Where the run's dataset is, for the check [default: where the run found it, else $CIFARBUDGET_DATA].",
)
@json_option("Print what was written and the check (max |logit difference|, identical predictions) as JSON.")
@user_errors
def command(
    run: str,
    fmt: str | None,
    output: str | None,
    check: bool,
    check_images: int,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Export the model of the run at RUN (a run folder or its checkpoint) to one file.

    The weights are those the run was evaluated with (EMA weights when it used EMA). TorchScript
    and ONNX models take float32 RGB pixels in 0..255, (N, 3, 32, 32), and normalise them
    themselves; a safetensors file holds the registered model's state_dict, with the mean/std
    in its metadata and in a JSON file beside it. Every file carries the run id, classes,
    mean/std and the full spec. The check reads the written bytes back with the format's own
    reader and compares logits with PyTorch on the test split's first images; a failed check
    writes nothing and exits 1. Needs the [export] extra (safetensors, onnx, onnxruntime).

    \b
    Examples:
      cifarbudget export results/runs/RUN -o model.onnx
      cifarbudget export results/runs/RUN --format safetensors -o model.safetensors
      cifarbudget export results/runs/RUN --format torchscript -o model.pt --no-check
    """
    from cifarbudget.export import export_run

    suffix = Path(output).suffix.lower() if output else ""
    named = _BY_SUFFIX.get(suffix)
    if fmt is not None and named is not None and named != fmt:
        raise click.UsageError(
            f"-o {output} is a {suffix} file name ({named}) but --format is {fmt}: "
            f"end the file name in {SUFFIX[fmt]}, or leave --format out"
        )
    fmt = fmt or named
    if fmt is None:
        raise click.UsageError(
            f"give --format ({', '.join(FORMATS)}) or an -o file ending in .safetensors, .pt or .onnx"
        )
    if output is None:
        path = Path(run).expanduser()
        name = path.name if path.is_dir() else path.parent.name
        output = f"{name or 'model'}{SUFFIX[fmt]}"
    report = export_run(run, fmt, output, check=check, data_dir=data_dir, check_images=check_images)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(report.summary())

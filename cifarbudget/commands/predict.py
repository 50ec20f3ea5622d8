"""``cifarbudget predict``: a submission CSV (and accuracy, for labeled inputs) from a trained run."""

from __future__ import annotations

from pathlib import Path

import click

from cifarbudget.commands.common import (
    deprecated_alias,
    deprecated_value,
    echo_json,
    json_option,
    output_option,
    user_errors,
)
from cifarbudget.errors import StorageError
from cifarbudget.io import atomic_write_all
from cifarbudget.progress import plural


@click.command("predict")
@click.argument("run_or_checkpoint", metavar="RUN_OR_CHECKPOINT")
@click.argument("input_path", metavar="INPUT")
@output_option(
    "The CSV to write (atomically): header ID,Labels, one row per image in input order "
    "[default: submission.csv].",
)
@deprecated_alias("--out", "-o/--output", "output", type=click.Path(dir_okay=False, path_type=str))
@click.option("--tta", help="TTA policy (see 'cifarbudget list tta') [default: the run's]; 'none' for none.")
@click.option(
    "--tta-param",
    "tta_param",
    multiple=True,
    metavar="KEY=VALUE",
    help="One parameter of the TTA policy (e.g. fraction=0.5); repeatable [default: the run's].",
)
@click.option(
    "--labels",
    "label_format",
    type=click.Choice(["name", "index"]),
    default="name",
    show_default=True,
    help="Write class names (airplane) or class indices (0) in the Labels column.",
)
@click.option(
    "--header",
    default="ID,Labels",
    show_default=True,
    help="The CSV's two column names, e.g. 'id,label' for Kaggle's CIFAR-10 competition.",
)
@click.option(
    "--probs",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also save the softmax probabilities, float32 N x classes, to this .npy file.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Images per forward pass [default: the trainer's evaluation batch, 1000].",
)
@click.option("--device", help="cuda, cuda:1, mps or cpu [default: the best available].")
@click.option(
    "--amp/--no-amp",
    default=None,
    help="bf16 autocast [default: as the run was trained on this kind of device].",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option("Print what was predicted (run, counts, accuracy, files written) as JSON.")
@user_errors
def command(
    run_or_checkpoint: str,
    input_path: str,
    output: str | None,
    tta: str | None,
    tta_param: tuple[str, ...],
    label_format: str,
    header: str,
    probs: str | None,
    batch_size: int | None,
    device: str | None,
    amp: bool | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Predict the class of every image in INPUT with a trained run; write a Kaggle submission CSV.

    RUN_OR_CHECKPOINT is a run folder (result.json + checkpoint.pt) or the checkpoint in one. The
    model is rebuilt from the run's spec with the weights it was evaluated with (EMA weights when
    the run used EMA) and the run's normalisation.

    \b
    INPUT is one of:
      a pickle (.pkl, .pickle, .p, or CIFAR's extension-less test_batch): a dict with 'data'
        (N x 3072 uint8 as CIFAR stores it, or N x 32 x 32 x 3), optional 'ids' and 'labels';
        WARNING: unpickling runs code from the file; use only pickles you trust
      a .npy (N x 32 x 32 x 3, N x 3 x 32 x 32 or N x 3072 uint8) or .npz ('data'/'x'/'images',
        optional 'ids', optional 'labels'/'y')
      one image (.png, .jpg, ...; its id: the file stem)
      a folder of images (ids: file stems, natural order), or of class subfolders (labeled)
      NAME[:ROOT]: the test split of a registered dataset (cifar10, synthetic, imagefolder:DIR)
    Without ids in the input, the ids are 1..N. For labeled inputs the accuracy is printed; on
    the run's own test split it equals the recorded test accuracy. See docs/predict.md.

    \b
    Examples:
      cifarbudget predict results/runs/resnetsmall-cifar10-e100-s0-1a2b3c cifar_test_nolabel.pkl
      cifarbudget predict RUN test_images/ -o submission.csv --tta none
      cifarbudget predict RUN cifar10 --labels index --probs probs.npy
    """
    from cifarbudget.predict import is_pickle, load_run
    from cifarbudget.predict import predict as predict_api
    from cifarbudget.spec import parse_flat_params

    out = deprecated_value("output", output) or "submission.csv"
    columns = tuple(c.strip() for c in header.split(","))
    if len(columns) != 2 or not all(columns):
        raise click.BadParameter(f"{header!r} is not two comma-separated column names", param_hint="--header")
    if probs and Path(probs).expanduser().resolve() == Path(out).expanduser().resolve():
        raise click.BadParameter(f"{probs} is also the CSV (-o); name another file", param_hint="--probs")
    for path in (out, probs):  # a file where a folder belongs: refused before predicting
        if path and (blocked := _not_a_folder(Path(path).expanduser())) is not None:
            raise StorageError(f"cannot write {path}: {blocked} is a file, not a folder")
    record, _ = load_run(run_or_checkpoint)  # a run it cannot use is refused before any input is read
    if is_pickle(input_path):
        click.echo(
            f"note: {input_path} is a pickle; loading it runs any code it holds (use only files you trust)",
            err=True,
        )
    result = predict_api(
        run_or_checkpoint,
        input_path,
        tta=tta,
        tta_params=parse_flat_params(tta_param, "--tta-param") if tta_param else None,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=not quiet,
    )
    files: list[tuple[Path | str, bytes]] = [(out, result.csv_text(label_format, columns).encode("utf-8"))]
    if probs:
        files.append((probs, result.probs_npy()))
    atomic_write_all(files)  # the CSV and the probabilities, or neither
    others = sorted(set((record.final or {}).get("tta_evals") or {}) - {result.tta})
    if tta is None and others:  # the run's own policy was used; say which others it was evaluated with
        click.echo(
            f"note: used the run's own TTA ({result.tta}); it was also evaluated with "
            f"{', '.join(others)} (pass --tta NAME to use one)",
            err=True,
        )
    if as_json:
        echo_json(
            {
                "run_id": result.run_id,
                "images": len(result),
                "tta": result.tta,
                "device": result.device,
                "accuracy": result.accuracy,
                "accuracy_no_tta": result.accuracy_no_tta,
                "recorded_accuracy": result.recorded_accuracy,
                "recorded_accuracy_no_tta": result.recorded_accuracy_no_tta,
                "output": out,
                "probs": probs,
            }
        )
        return
    tta_text = "no TTA" if result.tta == "none" else f"TTA {result.tta}"
    click.echo(
        f"predicted {plural(len(result), 'image')} with run {result.run_id} ({tta_text}, {result.device})"
    )
    if result.accuracy is not None:
        click.echo(_accuracy_line(result.accuracy, result.recorded_accuracy, len(result), tta_text))
    if result.accuracy_no_tta is not None:
        click.echo(
            _accuracy_line(result.accuracy_no_tta, result.recorded_accuracy_no_tta, len(result), "no TTA")
        )
    click.echo(f"wrote {out}: {plural(len(result), 'row')} ({','.join(columns)})")
    if probs:
        click.echo(f"wrote {probs}: probabilities {result.probs.shape[0]} x {result.probs.shape[1]}")


def _accuracy_line(acc: float, recorded: float | None, n: int, tta_text: str) -> str:
    line = f"accuracy {acc:.4f} ({round(acc * n)}/{n}) with {tta_text}"
    if recorded is not None:
        verdict = "equal" if acc == recorded else "differs: other device or precision?"
        line += f"; recorded test accuracy {recorded:.4f} ({verdict})"
    return line


def _not_a_folder(path: Path) -> Path | None:
    """The nearest existing folder above ``path`` when it is a file (nothing can be written there)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None

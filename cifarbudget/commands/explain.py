"""``cifarbudget explain``: a PNG grid of Grad-CAM maps of a trained run on some images, with true and
predicted labels (thin over :func:`cifarbudget.explain.gradcam_grid`)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from cifarbudget.commands.common import echo_json, json_option, output_option, user_errors
from cifarbudget.progress import plural


@click.command("explain")
@click.argument("run", metavar="RUN")
@click.argument("input_path", metavar="INPUT")
@output_option("The PNG to write (atomically).", default="gradcam.png")
@click.option(
    "-n",
    "--images",
    "n",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Draw the first N images of INPUT.",
)
@click.option(
    "--index",
    "indices",
    type=click.IntRange(min=0),
    multiple=True,
    help="Draw the image at this position of INPUT instead (0-based; repeatable).",
)
@click.option(
    "--layer",
    metavar="NAME",
    help="The target layer's dotted module name [default: the last spatial feature map before pooling].",
)
@click.option(
    "--columns", type=click.IntRange(min=1), default=4, show_default=True, help="Image pairs per row."
)
@json_option("Print what was drawn (layer; per image: id, predicted class, confidence, true label) as JSON.")
@user_errors
def command(
    run: str,
    input_path: str,
    output: str,
    n: int,
    indices: tuple[int, ...],
    layer: str | None,
    columns: int,
    as_json: bool,
) -> None:
    """Draw Grad-CAM maps of the run at RUN for images of INPUT into a PNG grid.

    Grad-CAM (Selvaraju et al., ICCV 2017) weights the target layer's feature maps by the
    gradient of the predicted class's logit. Each image is shown beside its heat map, titled
    with the predicted class and its probability, and with the true class when INPUT is labeled
    (green: right, red: wrong). The model is the run's, with the weights it was evaluated with (a
    run still training: its last checkpoint, with a warning). INPUT is anything 'cifarbudget
    predict' reads: a pickle, .npy/.npz, a folder of images (or of class subfolders), or
    NAME[:ROOT] for a registered dataset's test split (the run's own dataset without ROOT: the
    folder the run read). --layer must output a (N, C, H, W) feature map. Needs the [explain]
    extra (grad-cam).

    \b
    Examples:
      cifarbudget explain results/runs/RUN cifar10 -o gradcam.png
      cifarbudget explain results/runs/RUN my_images/ -n 8 --layer layer3
      cifarbudget explain results/runs/RUN cifar10 --index 3 --index 17
    """
    from cifarbudget.data.inputs import is_pickle
    from cifarbudget.explain import gradcam_grid

    if is_pickle(input_path):
        click.echo(
            f"note: {input_path} is a pickle; loading it runs any code it holds (use only files you trust)",
            err=True,
        )
    grid = gradcam_grid(
        run, input_path, output, n=n, target_layer=layer, indices=list(indices) or None, columns=columns
    )

    def name(index: int | None) -> str | None:
        if index is None:
            return None
        return grid.classes[index] if 0 <= index < len(grid.classes) else str(index)

    labels: Sequence[int | None] = grid.labels or [None] * len(grid.indices)
    images = [
        {
            "index": i,
            "id": id_,
            "predicted": name(p),
            "confidence": c,
            "label": name(y),
            "correct": None if y is None else y == p,
        }
        for i, id_, p, c, y in zip(
            grid.indices, grid.ids, grid.predicted, grid.confidence, labels, strict=True
        )
    ]
    right = sum(1 for im in images if im["correct"])
    if as_json:
        echo_json(
            {
                "output": str(grid.output),
                "target_layer": grid.target_layer,
                "images": images,
                "correct": right if grid.labels is not None else None,
            }
        )
        return
    line = f"wrote {grid.output}: Grad-CAM of {plural(len(images), 'image')} at layer '{grid.target_layer}'"
    if grid.labels is not None:
        line += f"; {right}/{len(images)} predicted right"
    click.echo(line)

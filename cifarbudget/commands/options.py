"""Command-line options generated from :class:`~cifarbudget.spec.RunSpec` field metadata.

``run`` and ``sweep`` are :class:`SpecCommand` objects: their options are rebuilt from
:func:`cifarbudget.spec.spec_fields` every time the command parses or prints help, so a field
added to RunSpec (with its ``option(...)`` metadata) becomes ``--its-flag`` in both commands and a
key of sweep files, with no declaration repeated anywhere. The options that say where and how a
run goes (data folder, results folder, device, precision) are declared once here as well.

In ``run`` a spec option takes one value (``--aug`` may be repeated: the pipelines are joined);
in ``sweep`` every axis option takes several values (repeat it, or a comma list; one pipeline per
``--aug``) and the grid is their product.
"""

from __future__ import annotations

from typing import Any

import click

from cifarbudget.spec import SpecField, spec_fields

# Where and how runs go: shared by ``run`` and ``sweep`` (none of them changes a run's identity).
SETTINGS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--recipe",),
        {
            "help": "Start from a named preset (see 'cifarbudget list recipes'); options given here override it."
        },
    ),
    (
        ("--data-dir",),
        {
            "type": click.Path(file_okay=False, path_type=str),
            "help": "Where the dataset lives or is downloaded to [default: $CIFARBUDGET_DATA or ~/.cache/cifarbudget/data].",
        },
    ),
    (
        ("--download",),
        {
            "is_flag": True,
            "default": None,
            "help": "Download the dataset if it is missing (cifar10, cifar100).",
        },
    ),
    (
        ("--results-dir",),
        {
            "type": click.Path(file_okay=False, path_type=str),
            "help": "One folder per run is written here [default: results/runs].",
        },
    ),
    (("--device",), {"help": "cuda, cuda:1, mps or cpu [default: the best available]."}),
    (("--amp/--no-amp",), {"default": None, "help": "bf16 autocast [default: on for CUDA]."}),
    (
        ("--channels-last/--no-channels-last",),
        {"default": None, "help": "channels_last memory format [default: on for CUDA and CPU]."},
    ),
    (("--compile", "compile_"), {"is_flag": True, "default": None, "help": "torch.compile the model."}),
    (
        ("--track",),
        {
            "multiple": True,
            "metavar": "NAME",
            "help": "Follow the run with a tracker (see 'cifarbudget list callbacks'): tensorboard, mlflow; repeatable.",
        },
    ),
    (
        ("--deterministic",),
        {
            "is_flag": True,
            "default": None,
            "help": "Deterministic GPU kernels (cuDNN, cuBLAS, torch.use_deterministic_algorithms); slower.",
        },
    ),
    (
        ("--aug-chunk",),
        {
            "type": click.IntRange(min=1),
            "default": None,
            "metavar": "N",
            "help": "Augment N training batches at once: per-image augmentations run on all N, CutMix/Mixup "
            "on each; the same distribution of augmentations, other draws per image [default: 1].",
        },
    ),
)


def settings_options() -> list[click.Option]:
    return [click.Option(list(decls), **kwargs) for decls, kwargs in SETTINGS]


def _default_text(f: SpecField) -> str:
    if f.kind is tuple:
        return "+".join(f.default) or "none"
    if f.kind is dict:
        return "none"
    if f.kind is bool:
        return "on" if f.default else "off"
    if f.name == "budget":
        return f"{f.default / 1e6:g}M"
    return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def dest(f: SpecField) -> str:
    """The click parameter name of a field's option (its field name, so values map back directly)."""
    return f.name


def run_options() -> list[click.Option]:
    """One option per RunSpec field for ``cifarbudget run`` (the model is an argument there)."""
    out = []
    for f in spec_fields():
        if not f.cli or f.name == "model":
            continue
        help_ = f"{f.help} [default: {_default_text(f)}]"
        if f.kind is bool and f.name == "allow_over_budget":
            out.append(click.Option([f.flag, dest(f)], is_flag=True, default=None, help=f.help))
        elif f.kind is bool:
            name = f.flag.removeprefix("--")
            out.append(
                click.Option([f"--{name}/--no-{name}", dest(f)], default=None, show_default=False, help=help_)
            )
        elif f.kind in (tuple, dict):
            metavar = (
                ("AUG.KEY=VALUE" if f.name == "aug_params" else "KEY=VALUE") if f.kind is dict else "PIPELINE"
            )
            out.append(click.Option([f.flag, dest(f)], multiple=True, metavar=metavar, help=help_))
        elif f.name == "tta":
            out.append(
                click.Option(
                    [f.flag, dest(f)],
                    is_flag=False,
                    flag_value="flip",
                    default=None,
                    help=help_ + " A bare --tta means 'flip'.",
                )
            )
        else:
            kind = f.cli_type or (f.kind if f.kind in (int, float) else str)
            out.append(click.Option([f.flag, dest(f)], type=kind, default=None, help=help_))
    return out


def sweep_options() -> list[click.Option]:
    """One option per RunSpec field for ``cifarbudget sweep``: axes take several values."""
    out = []
    for f in spec_fields():
        if not f.cli or f.name in ("seed", "allow_over_budget"):
            continue  # seeds: --seeds/--seed below; a sweep never trains over budget
        if f.kind is dict:
            out.append(
                click.Option(
                    [f.flag, dest(f)],
                    multiple=True,
                    metavar="AUG.KEY=VALUE" if f.name == "aug_params" else "KEY=VALUE",
                    help=f"{f.help} For every run.",
                )
            )
        elif f.kind is bool:
            name = f.flag.removeprefix("--")
            out.append(
                click.Option(
                    [f"--{name}/--no-{name}", dest(f)], default=None, help=f"{f.help} For every run."
                )
            )
        elif not f.axis:
            out.append(click.Option([f.flag, dest(f)], default=None, help=f"{f.help} For every run."))
        elif f.kind is tuple:
            out.append(
                click.Option(
                    [f.flag, dest(f)],
                    multiple=True,
                    metavar="PIPELINE",
                    help="One augmentation pipeline per --aug, '+'-joined: crop-flip, cutmix, cutmix+blur+erasing, none.",
                )
            )
        else:
            out.append(
                click.Option(
                    [f.flag, dest(f)],
                    multiple=True,
                    metavar="V[,V...]",
                    help=f"{f.help} Repeatable, or a comma list.",
                )
            )
    out.append(
        click.Option(["--seeds", "n_seeds"], type=int, help="Run seeds 0..N-1 of every configuration.")
    )
    out.append(
        click.Option(
            ["--seed", "seed_list"],
            multiple=True,
            type=int,
            help="Run this seed (repeatable); or use --seeds.",
        )
    )
    return out


class SpecCommand(click.Command):
    """A click command whose RunSpec options are generated when it parses or shows its help."""

    def __init__(self, *args: Any, spec_options: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._spec_options = spec_options

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        static = list(self.params)
        help_option = self.get_help_option(ctx)
        generated = [*self._spec_options(), *settings_options()]
        return [*static[:1], *generated, *static[1:], *([help_option] if help_option else [])]


def split_values(values: tuple[str, ...]) -> list[str]:
    """``("0.1,0.2", "0.3")`` -> ``["0.1", "0.2", "0.3"]``: a sweep axis from repeated/comma values."""
    return [v.strip() for item in values for v in str(item).split(",") if v.strip()]


def spec_values(params: dict[str, Any], *, sweep: bool) -> dict[str, Any]:
    """Pop the RunSpec values click parsed out of ``params`` (``None``/empty = not given)."""
    values: dict[str, Any] = {}
    for f in spec_fields():
        if f.name not in params:
            continue
        value = params.pop(f.name)
        if value is None or value == ():
            continue
        if f.kind is dict:
            from cifarbudget.spec import parse_flat_params, parse_params

            nested = f.name == "aug_params"  # one table per augmentation: AUG.KEY=VALUE
            values[f.name] = parse_params(value, f.flag) if nested else parse_flat_params(value, f.flag)
        elif sweep and f.axis and f.kind not in (tuple, bool):
            values[f.name] = split_values(value)
        elif sweep and f.kind is tuple:
            values[f.name] = list(value)
        else:
            values[f.name] = value
    return values


def setting_values(params: dict[str, Any]) -> dict[str, Any]:
    """Pop the where/how options (``compile_`` -> ``compile``) out of ``params``."""
    out = {}
    for decls, _ in SETTINGS:
        name = (
            decls[1]
            if len(decls) > 1 and not decls[1].startswith("-")
            else decls[0].split("/")[0].removeprefix("--").replace("-", "_")
        )
        value = params.pop(name, None)
        out[name.rstrip("_")] = None if value == () else value
    return out

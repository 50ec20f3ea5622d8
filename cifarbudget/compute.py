"""Training and inference compute of a run, in multiply-accumulates (MACs).

Definitions (docs/results.md, "compute"):

- **Training compute** = forward MACs per image (conv + linear, fvcore; see
  :mod:`cifarbudget.budget`) x 3 (a backward pass costs about two forward passes) x the training
  images seen x the forward/backward passes per optimizer step (1; SAM: 2), summed over the
  epochs. It is what a compute budget (``--compute-budget 30T``) limits, and it is known before
  training: the images seen are ``steps_per_epoch x batch_size`` of the training split per epoch
  (its size comes from the dataset's metadata), the passes from the optimizer's registration.
  The forward MACs are those of the 32x32 input, except in an epoch where an augmentation hands
  the model images of another size (``input_size(epoch)``, e.g. ``progressive-resize``): that
  epoch counts the network's MACs at that size, counted by fvcore the same way.
- Not counted in it: augmentation, normalisation, elementwise and pooling operations, the
  optimizer's arithmetic, data-dependent initialisation (a few thousand images, once).
- **Inference compute** (recorded separately, never against the training budget): the per-epoch
  validation, the final evaluation of validation and test (with the run's TTA policy, at
  the views it actually computed), and any other model a loss runs on the training images (a
  distillation teacher's forward passes).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cifarbudget.spec import RunSpec  # spec does not import this module: no circle

TRAIN_FACTOR = 3  # forward + backward ~ 3 forward passes


def images_per_epoch(n_train: int, batch_size: int) -> int:
    """Images one epoch trains on: the last partial batch is dropped (unless the split is smaller than a batch)."""
    return (n_train // batch_size) * batch_size if n_train >= batch_size else n_train


def validation_size(spec: RunSpec, n_train: int) -> int:
    """Images held out for validation: ``--val-size`` exactly; the default 5,000 is capped at 10% of
    a smaller training split (CIFAR's 50,000 -> 5,000; 6,000 synthetic images -> 600)."""
    from cifarbudget.spec import DEFAULT_VAL_SIZE

    return min(spec.val_size, n_train // 10) if spec.val_size == DEFAULT_VAL_SIZE else spec.val_size


def training_split_size(spec: RunSpec, n_train_total: int) -> int:
    """Training images after the validation hold-out and the subset, as the run will split them."""
    val = validation_size(spec, n_train_total)
    left = n_train_total - val
    return min(spec.train_subset, left) if spec.train_subset else left


def passes_per_step(spec: RunSpec) -> int:
    """Forward/backward passes per optimizer step: the optimizer factory's optional
    ``passes_per_step`` (an int, or a function of the run's ``--opt-param`` values); 1 otherwise."""
    from cifarbudget.plugins import get_registry

    factory = get_registry("optimizers").get(spec.optimizer).factory
    passes = getattr(factory, "passes_per_step", 1)
    return int(passes(spec.opt_params) if callable(passes) else passes)


def epoch_input_sizes(spec: RunSpec) -> list[int | None]:
    """The input side each epoch trains at, ``None`` where the images keep their size: the last
    answer of the run's augmentations that change it (an ``input_size(epoch)`` method). Only those
    augmentations are built (building the others could draw from the RNG before the run seeds it)."""
    from cifarbudget.plugins import get_registry

    registry = get_registry("augmentations")
    resizers = []
    for name in spec.augs:
        factory = registry.get(name).factory
        target = factory.resolve() if hasattr(factory, "resolve") else factory
        if callable(getattr(target, "input_size", None)):
            resizers.append(registry.create(name, **spec.aug_params.get(name, {})))
    sizes: list[int | None] = []
    for epoch in range(spec.epochs):
        size = None
        for aug in resizers:
            size = aug.input_size(epoch) or size
        sizes.append(size)
    return sizes


@lru_cache(maxsize=64)
def _macs_at(model: str, params_json: str, num_classes: int, size: int) -> int:
    import json

    from cifarbudget.api import create_model
    from cifarbudget.budget import count_macs_at
    from cifarbudget.errors import RunError

    try:
        return count_macs_at(create_model(model, num_classes=num_classes, **json.loads(params_json)), size)
    except Exception as exc:  # any failure of the model on that input is the answer the user gets
        first = (str(exc).splitlines() or [""])[0]
        raise RunError(
            f"{model} cannot train on {size}x{size} images (an augmentation resizes them to that): "
            f"{type(exc).__name__}: {first}"
        ) from None


def forward_macs_per_epoch(spec: RunSpec, macs: int, num_classes: int) -> list[int]:
    """Forward MACs per image in each epoch: ``macs`` (the 32x32 count), or the model's MACs at the
    size an augmentation trains that epoch at (:func:`epoch_input_sizes`)."""
    import json

    params = json.dumps(spec.model_params, sort_keys=True, default=str)
    return [
        macs if size is None else _macs_at(spec.model, params, num_classes, size)
        for size in epoch_input_sizes(spec)
    ]


def planned_training(spec: RunSpec, macs: int, n_train_total: int, num_classes: int = 10) -> dict[str, Any]:
    """The training compute a run will spend, before it starts."""
    n_train = training_split_size(spec, n_train_total)
    per_epoch = images_per_epoch(n_train, spec.batch_size)
    passes = passes_per_step(spec)
    epoch_macs = forward_macs_per_epoch(spec, macs, num_classes)
    plan: dict[str, Any] = {
        "train_images": per_epoch * spec.epochs,
        "passes_per_step": passes,
        "forward_macs": macs,
        "train_macs": TRAIN_FACTOR * per_epoch * passes * sum(epoch_macs),
    }
    if any(m != macs for m in epoch_macs):
        plan["forward_macs_per_epoch"] = epoch_macs
    return plan

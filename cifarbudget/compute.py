"""Training and inference compute of a run, in multiply-accumulates (MACs).

Definitions (docs/results.md, "compute"):

- **Training compute** = forward MACs per image (conv + linear, fvcore; see
  :mod:`cifarbudget.budget`) x 3 (a backward pass costs about two forward passes) x the training
  images seen x the forward/backward passes per optimizer step (1; SAM: 2). It is what a compute
  budget (``--compute-budget 30T``) limits, and it is known before training: the images seen are
  ``epochs x steps_per_epoch x batch_size`` of the training split (its size comes from the
  dataset's metadata), the passes from the optimizer's registration.
- Not counted in it: augmentation, normalisation, elementwise and pooling operations, the
  optimizer's arithmetic, data-dependent initialisation (a few thousand images, once).
- **Inference compute** (recorded separately, never against the training budget): the per-epoch
  validation, the final evaluation of validation and test (with the run's TTA policy, at
  the views it actually computed), and any other model a loss runs on the training images (a
  distillation teacher's forward passes).
"""

from __future__ import annotations

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


def planned_training(spec: RunSpec, macs: int, n_train_total: int) -> dict[str, Any]:
    """The training compute a run will spend, before it starts."""
    n_train = training_split_size(spec, n_train_total)
    images = images_per_epoch(n_train, spec.batch_size) * spec.epochs
    passes = passes_per_step(spec)
    return {
        "train_images": images,
        "passes_per_step": passes,
        "forward_macs": macs,
        "train_macs": TRAIN_FACTOR * macs * images * passes,
    }

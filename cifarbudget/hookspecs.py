"""Every hook a cifarbudget plugin can implement: the public plugin contract.

Each hook is called once per plugin, with a registry to add entries to. A plugin implements a
hook by defining a function of the same name decorated with :data:`cifarbudget.hookimpl`::

    from cifarbudget import hookimpl

    @hookimpl
    def cifarbudget_register_models(registry):
        registry.add("mynet", build_mynet, description="My net (Doe et al. 2025)")

Names are lower-case and unique across all plugins; a second plugin adding a taken name is an
error naming both plugins. A hook that raises marks its plugin as failed; the others keep working.
Every hook is documented for plugin authors in ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from cifarbudget.registry import PluginRegistryView

PROJECT_NAME = "cifarbudget"
ENTRY_POINT_GROUP = "cifarbudget"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def cifarbudget_register_models(registry: PluginRegistryView) -> None:
    """Register image classifiers.

    Called once per plugin when the model registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")`` for each model.
        ``factory(num_classes: int = 10) -> torch.nn.Module``; the module takes a float batch
        ``(N, 3, 32, 32)`` (normalised) and returns logits ``(N, num_classes)``. Building must
        be cheap and must not download anything (no pretrained weights by default).
    :returns: nothing; the return value is ignored.
    """


@hookspec
def cifarbudget_register_augmentations(registry: PluginRegistryView) -> None:
    """Register batch augmentations used during training.

    Called once per plugin when the augmentation registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory() -> aug``; ``aug(images, targets) -> (images, targets)`` transforms a whole
        batch on the training device: ``images`` float ``(N, 3, H, W)`` normalised, ``targets``
        float soft labels ``(N, C)`` (rows sum to 1). Randomness is per image and drawn from
        torch's global RNG on the images' device, so runs are reproducible under a seed. An
        ``aug`` may expose ``params() -> dict`` to record its settings in the run's result.
    :returns: nothing; the return value is ignored.
    """


@hookspec
def cifarbudget_register_schedulers(registry: PluginRegistryView) -> None:
    """Register learning-rate schedules.

    Called once per plugin when the scheduler registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory(optimizer, *, epochs: int, steps_per_epoch: int) ->
        torch.optim.lr_scheduler.LRScheduler``; the engine calls ``scheduler.step()`` once per
        optimizer step (``epochs * steps_per_epoch`` times in all), never per epoch. The
        optimizer's initial ``lr`` is the peak learning rate. When the user asks for a warmup
        (``--warmup N``) the factory is also passed ``warmup_epochs: float``; a factory that
        does not accept it is reported as not supporting warmup.
    :returns: nothing; the return value is ignored.
    """


@hookspec
def cifarbudget_register_tta_policies(registry: PluginRegistryView) -> None:
    """Register test-time augmentation policies.

    Called once per plugin when the TTA registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory() -> policy``; ``policy.n_views: int`` is the number of forward passes per
        image (inference cost = ``n_views`` x the model's MACs); ``policy(model, images) ->
        logits`` takes a normalised float batch ``(N, 3, H, W)`` and returns ``(N, C)`` logits
        (usually the mean over views). The model is in eval mode and gradients are off.
    :returns: nothing; the return value is ignored.
    """


@hookspec
def cifarbudget_register_datasets(registry: PluginRegistryView) -> None:
    """Register datasets.

    Called once per plugin when the dataset registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory(root, *, train: bool, download: bool) -> split`` where ``split.images`` is a
        uint8 tensor ``(N, 3, H, W)``, ``split.labels`` int64 ``(N,)`` and ``split.classes`` a
        list of class names. ``root`` is a folder (``pathlib.Path``) the dataset may read and
        cache into. Missing data raises :class:`cifarbudget.errors.DataError` with a one-line
        message saying what to pass instead.
    :returns: nothing; the return value is ignored.
    """


@hookspec
def cifarbudget_register_recipes(registry: PluginRegistryView) -> None:
    """Register recipes: named presets for whole run configurations.

    Called once per plugin when the recipe registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory() -> dict`` mapping :func:`cifarbudget.run` keyword arguments to values
        (for example ``{"model": "resnetsmall", "augs": ["crop-flip"], "sched": "multistep",
        "epochs": 100}``). Options given explicitly by the user override the recipe's values.
    :returns: nothing; the return value is ignored.
    """

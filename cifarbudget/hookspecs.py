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
        (usually the mean over views). The model is in eval mode and gradients are off. Optional:
        ``views_computed`` (an int the policy increases by the image-forward-passes it runs; the
        run records the mean views per image actually used, e.g. for selective TTA, where
        ``n_views`` may be a float: the expected views per image) and ``setup(*, mean, std)``
        (called before evaluating with the run's normalisation, 0..1 units per channel, for views
        that work on pixel values).
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


@hookspec
def cifarbudget_register_optimizers(registry: PluginRegistryView) -> None:
    """Register optimizers.

    Called once per plugin when the optimizer registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory(model, *, lr: float, momentum: float, weight_decay: float, nesterov: bool,
        **params) -> torch.optim.Optimizer``: it gets the model (already on the training device,
        in its memory format) so it can build parameter groups, the run's hyperparameters, and the
        run's ``--opt-param KEY=VALUE`` values as keyword arguments (an unknown key should raise
        :class:`cifarbudget.errors.RunError`). The returned optimizer's ``param_groups[i]["lr"]``
        is what schedulers scale. Optional attributes: ``needs_closure = True`` makes the engine
        call ``optimizer.step(closure)``, where ``closure()`` zeroes the gradients, runs the forward
        pass and the loss, calls ``backward()`` and returns the loss (SAM calls it twice);
        ``passes_per_step`` (default 1) is the number of forward/backward passes per step, used to
        count the run's training compute. ``state_dict()``/``load_state_dict()`` must round-trip
        exactly (runs resume from checkpoints).
    :returns: nothing; the return value is ignored.
    """


@hookspec
def cifarbudget_register_losses(registry: PluginRegistryView) -> None:
    """Register training losses.

    Called once per plugin when the loss registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory(**params) -> loss`` with the run's ``--loss-param KEY=VALUE`` values;
        ``loss(logits, targets, *, images) -> torch.Tensor`` (a scalar) where ``targets`` are float
        soft labels ``(N, C)`` (label-smoothed and mixed by the augmentations) and ``images`` the
        normalised input batch. Optional: ``params() -> dict`` (JSON-friendly resolved settings,
        part of the run's identity: name a teacher by its run id, not its path),
        ``setup(*, device, mean, std)`` (called once before training with the training device and
        the run's normalisation, 0..1 units per channel) and ``inference_macs_per_image: int`` (the
        forward MACs of any other model the loss runs per training image, e.g. a teacher; recorded
        as inference compute, never counted against the student's parameter budget).
    :returns: nothing; the return value is ignored.
    """


@hookspec
def cifarbudget_register_callbacks(registry: PluginRegistryView) -> None:
    """Register run callbacks (experiment trackers and anything else that follows a run).

    Called once per plugin when the callback registry is first used.

    :param registry: call ``registry.add(name, factory, *, description="")``.
        ``factory(**params) -> callback``; a run given ``--track NAME`` builds one and calls its
        methods, each optional: ``on_run_start(info)`` (``info.run_id``, ``info.run_dir``,
        ``info.spec``, ``info.params``), ``on_epoch_end(epoch: int, metrics: dict)`` after each
        epoch's checkpoint and record are written, ``on_evaluation(final: dict)`` after the final
        evaluation, and ``on_run_end(result: dict, plots: list[Path])`` after the record is final
        (also when the run failed or diverged). A callback that raises gets one warning and is
        switched off for the rest of the run: it can never stop or corrupt a run. Callbacks are not
        part of a run's identity.
    :returns: nothing; the return value is ignored.
    """

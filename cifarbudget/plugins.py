"""The plugin manager: builtin plugins first, then every entry point of the group ``cifarbudget``.

Entry points are loaded one by one; a plugin that fails to import, or whose hook raises, is
recorded (name and error) and skipped, so every other plugin keeps working and an unknown-name
error can point at it. Of two distributions with the same plugin name, the first found loads and
the other is recorded as not loaded, naming both. Set ``CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD=1``
to load the builtin plugins only (tests, CI, debugging a broken install).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from cifarbudget import hookspecs
from cifarbudget import registry as registry_module
from cifarbudget.errors import DuplicateNameError, PluginError, describe
from cifarbudget.registry import Registry, Returns

DEFAULT_PLUGINS: tuple[str, ...] = (
    "cifarbudget.builtin.models",
    "cifarbudget.builtin.augmentations",
    "cifarbudget.builtin.schedulers",
    "cifarbudget.builtin.tta",
    "cifarbudget.builtin.datasets",
    "cifarbudget.builtin.recipes",
    "cifarbudget.builtin.optimizers",
    "cifarbudget.builtin.losses",
    "cifarbudget.builtin.callbacks",
)
AUTOLOAD_ENV = "CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD"


def _not_run_options(result: Any) -> str | None:
    """What is wrong with a recipe's result, if it is not a mapping of option names to values."""
    if not isinstance(result, Mapping):
        return "None" if result is None else type(result).__name__
    key = next((k for k in result if not isinstance(k, str)), None)
    return None if key is None else f"a {type(result).__name__} with the key {key!r}, not an option name"


RUN_OPTIONS = Returns(
    _not_run_options,
    "a dict of run options (keyword arguments of cifarbudget.run), e.g. {'model': 'resnet20', 'epochs': 10}",
)


@dataclass(frozen=True)
class Kind:
    """One kind of registry: its CLI name, the singular used in messages, its hook, and what its
    factories must return (checked by :meth:`Registry.create`; ``None``: not checked)."""

    name: str
    singular: str
    hook: str
    returns: Returns | None = None


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("models", "model", "cifarbudget_register_models"),
        Kind("augmentations", "augmentation", "cifarbudget_register_augmentations"),
        Kind("schedulers", "scheduler", "cifarbudget_register_schedulers"),
        Kind("tta", "TTA policy", "cifarbudget_register_tta_policies"),
        Kind("datasets", "dataset", "cifarbudget_register_datasets"),
        Kind("recipes", "recipe", "cifarbudget_register_recipes", RUN_OPTIONS),
        Kind("optimizers", "optimizer", "cifarbudget_register_optimizers"),
        Kind("losses", "loss", "cifarbudget_register_losses"),
        Kind("callbacks", "callback", "cifarbudget_register_callbacks"),
    )
}


@dataclass
class PluginInfo:
    """An installed plugin as ``cifarbudget plugins`` shows it."""

    name: str
    version: str | None
    distribution: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)


@dataclass
class FailedPlugin:
    """A plugin that could not be imported, or one of whose hooks raised."""

    name: str
    version: str | None
    distribution: str | None
    stage: str  # "import" or the name of the hook that raised
    error: str


def _describe(exc: BaseException) -> str:
    return describe(exc)


class PluginSystem:
    """A pluggy manager plus one lazily built :class:`Registry` per kind."""

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        extra_plugins: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        if autoload is None:
            autoload = not os.environ.get(AUTOLOAD_ENV)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.failed: dict[str, FailedPlugin] = {}
        # plugin name -> error, shared (live) by every registry so unknown-name errors can name it
        self.failed_errors: dict[str, str] = {}
        self._registries: dict[str, Registry] = {}
        # re-entrant: a hook may read another registry (a recipe checking that its model exists)
        self._lock = threading.RLock()
        version = _own_version()
        for module_name in DEFAULT_PLUGINS:
            self._register(importlib.import_module(module_name), module_name, version, "cifarbudget", True)
        for name, plugin in extra_plugins:
            self._register(plugin, name, None, None, False)
        if autoload:
            self._load_entry_points()

    def _fail(
        self,
        key: str,
        version: str | None,
        dist: str | None,
        stage: str,
        error: str,
        *,
        plugin: str | None = None,
    ) -> None:
        """Record a failed plugin under ``key`` (its name, unless ``plugin`` gives it)."""
        if key not in self.failed:
            self.failed[key] = FailedPlugin(plugin or key, version, dist, stage, error)
            self.failed_errors[key] = error

    def _register(self, plugin: Any, name: str, version: str | None, dist: str | None, builtin: bool) -> None:
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # "Plugin 'x' for hook 'y'" + the reason, lines
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise PluginError(f"plugin {name!r}: {'; '.join(lines[1:] or lines)}") from None
        callers = self.pm.get_hookcallers(plugin) or []
        # an implementation without a spec is a misspelled hook: pluggy would silently never call it
        unknown = sorted(c.name for c in callers if c.spec is None and c.name.startswith("cifarbudget_"))
        if unknown:
            self.pm.unregister(plugin)
            known = ", ".join(k.hook for k in KINDS.values())
            raise PluginError(
                f"plugin {name!r} implements unknown hook {', '.join(unknown)} (the hooks are: {known})"
            )
        hooks = sorted(c.name for c in callers)
        self.infos[name] = PluginInfo(name, version, dist, builtin, hooks)

    def _load_entry_points(self) -> None:
        for ep in sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            seen = self.infos.get(ep.name) or self.failed.get(ep.name)
            if seen is not None:
                if seen.distribution == dist_name:
                    continue  # the same distribution seen twice on sys.path
                # this distribution is not loaded; the plugin already under the name stays as it is,
                # so the record is keyed by name and distribution, never by the name alone
                self._fail(
                    f"{ep.name} from {dist_name}",
                    version,
                    dist_name,
                    "import",
                    f"PluginError: the plugin name {ep.name!r} is used by both {seen.distribution} "
                    f"and {dist_name}; {dist_name} was not loaded: uninstall one of them",
                    plugin=ep.name,
                )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                self._fail(ep.name, version, dist_name, "import", _describe(exc))
                continue
            try:
                self._register(plugin, ep.name, version, dist_name, False)
            except Exception as exc:
                self._fail(ep.name, version, dist_name, "register", _describe(exc))

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (see :data:`KINDS`), filled by every plugin on first use."""
        with self._lock:
            if kind not in self._registries:
                self._registries[kind] = self._build(KINDS[kind])
            return self._registries[kind]

    def _build(self, kind: Kind) -> Registry:
        registry = Registry(kind.singular, plural=kind.name, returns=kind.returns)
        registry.failed_plugins = self.failed_errors
        caller = getattr(self.pm.hook, kind.hook)
        # pluggy keeps implementations in registration order; builtins were registered first.
        for impl in caller.get_hookimpls():
            view = registry.for_plugin(impl.plugin_name)
            kwargs = {"registry": view} if "registry" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except DuplicateNameError:
                raise
            except Exception as exc:
                registry.remove_plugin(impl.plugin_name)  # nothing of a half-run hook survives
                info = self.infos.get(impl.plugin_name)
                self._fail(
                    impl.plugin_name,
                    info.version if info else None,
                    info.distribution if info else None,
                    kind.hook,
                    _describe(exc),
                )
        return registry

    def provider(self, factory: object) -> str | None:
        """The plugin that registered ``factory`` in a registry built so far, or ``None``."""
        with self._lock:
            found = (r.provider(factory) for r in self._registries.values())
            return next((plugin for plugin in found if plugin is not None), None)

    def load_all(self) -> None:
        """Build every registry now (so that hook failures show up in :meth:`report`)."""
        for kind in KINDS:
            self.registry(kind)

    def report(self) -> dict[str, list[dict[str, Any]]]:
        """Installed and failed plugins, as ``cifarbudget plugins --json`` prints them."""
        self.load_all()
        return {
            "plugins": [asdict(i) for i in self.infos.values() if i.name not in self.failed],
            "failed": [asdict(f) for f in self.failed.values()],
        }


def _own_version() -> str:
    try:
        return metadata.version("cifarbudget")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


_system: PluginSystem | None = None
_system_lock = threading.Lock()


def get_plugin_system() -> PluginSystem:
    """The process-wide plugin system, created on first use."""
    global _system
    with _system_lock:
        if _system is None:
            _system = PluginSystem()
        return _system


def reset_plugins(
    *, autoload: bool | None = None, extra_plugins: tuple[tuple[str, ModuleType | Any], ...] = ()
) -> PluginSystem:
    """Throw the plugin system away and build a new one (tests, or after installing a plugin)."""
    global _system
    with _system_lock:
        _system = PluginSystem(autoload=autoload, extra_plugins=extra_plugins)
        return _system


def provider_of(factory: object) -> str | None:
    """The plugin that registered ``factory`` in the process-wide plugin system (messages name it);
    ``None`` when none did, or no plugin system exists yet."""
    system = _system
    return system.provider(factory) if system is not None else None


registry_module.PROVIDER_LOOKUP.append(provider_of)  # registry's messages name the plugin through it


def get_registry(kind: str) -> Registry:
    """Shortcut for ``get_plugin_system().registry(kind)``."""
    return get_plugin_system().registry(kind)

"""A generic name -> factory registry with wildcard listing, shared by every plugin kind.

One :class:`Registry` exists per kind (models, augmentations, ...). Plugins add to it through
:meth:`Registry.add` while their ``cifarbudget_register_*`` hook runs; the plugin manager hands
each plugin a view that records which plugin provided each name.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cifarbudget.errors import (
    CifarBudgetError,
    DuplicateNameError,
    PluginError,
    RunError,
    UnknownNameError,
    describe,
    note_source,
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class Entry:
    """One registered name: what builds it, what it is, and which plugin provided it."""

    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str


@dataclass(frozen=True)
class Returns:
    """What every factory of a kind must return, checked by :meth:`Registry.create`: ``problem``
    says what is wrong with a result (``None``: nothing), ``expected`` what it should be instead."""

    problem: Callable[[Any], str | None]
    expected: str


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``resnet20 < resnet110`` (numbers compare as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


class Registry:
    """Names of one kind (``"model"``, ``"augmentation"``, ...) mapped to their factories."""

    def __init__(self, kind: str, plural: str | None = None, *, returns: Returns | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.returns = returns
        self._entries: dict[str, Entry] = {}
        # plugin name -> error text, for plugins that failed before they could register anything;
        # set by the plugin manager so that unknown-name errors can point at them.
        self.failed_plugins: dict[str, str] = {}

    # -- writing -------------------------------------------------------------------------------
    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        plugin: str = "<unknown>",
    ) -> None:
        """Register ``factory`` under ``name``; raise if the name is invalid or already taken."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PluginError(
                f"plugin {plugin!r}: invalid {self.kind} name {name!r} "
                "(use lower-case letters, digits, '-', '_' or '.')"
            )
        if not callable(factory):
            raise PluginError(f"plugin {plugin!r}: the factory for {self.kind} {name!r} is not callable")
        if not isinstance(description, str):
            raise PluginError(
                f"plugin {plugin!r}: the description of {self.kind} {name!r} is "
                f"{type(description).__name__}, not text"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            if other == plugin:  # one plugin, one name twice: nothing to uninstall
                raise DuplicateNameError(f"plugin {plugin!r} registers {self.kind} {name!r} twice")
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}; "
                "uninstall or disable one of them"
            )
        self._entries[name] = Entry(name, factory, description.strip(), plugin)

    def remove_plugin(self, plugin: str) -> None:
        """Drop every entry ``plugin`` added (its hook raised halfway: nothing of it should survive)."""
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[name]

    def provider(self, factory: object) -> str | None:
        """The plugin that registered ``factory`` (the same object) here, or ``None``."""
        return next((e.plugin for e in self._entries.values() if e.factory is factory), None)

    def for_plugin(self, plugin: str) -> PluginRegistryView:
        """The view handed to one plugin's hook: ``add`` records that plugin as the provider."""
        return PluginRegistryView(self, plugin)

    # -- reading -------------------------------------------------------------------------------
    def get(self, name: str) -> Entry:
        """The entry for ``name``, or an :class:`UnknownNameError` with close matches."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under ``name``, and check its result against ``returns``.

        An exception from the factory propagates as it is (callers tell a plugin's failure from
        the library's own errors by its type), with a note naming the entry and its plugin."""
        entry = self.get(name)
        try:
            result = entry.factory(*args, **kwargs)
        except Exception as exc:
            _note_plugin(exc, f"{self.kind} {name!r}", entry.plugin)
            raise
        problem = self.returns.problem(result) if self.returns is not None else None
        if problem is not None and self.returns is not None:
            raise PluginError(
                f"{self.kind} {name!r} (plugin {entry.plugin!r}): its factory returned {problem}; "
                f"expected {self.returns.expected}"
            )
        return result

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, naturally sorted, optionally filtered by a shell wildcard."""
        return [e.name for e in self.entries(pattern)]

    def entries(self, pattern: str | None = None) -> list[Entry]:
        """Registered entries, naturally sorted, optionally filtered by a shell wildcard."""
        found = [e for n, e in self._entries.items() if pattern is None or fnmatch.fnmatchcase(n, pattern)]
        return sorted(found, key=lambda e: natural_key(e.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"

    def _unknown_message(self, name: str) -> str:
        msg = f"Unknown {self.kind} {name!r}."
        # prefix matches first ('resnet' -> resnet20, resnet32, ...), then look-alikes ('resnet2' -> resnet20)
        prefixed = [n for n in self.names() if n.startswith(str(name))]
        alike = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.6)
        close = list(dict.fromkeys(prefixed + alike))[:3]
        if close:
            msg += " Did you mean: " + ", ".join(close) + "?"
        else:
            msg += f" Run 'cifarbudget list {self.plural}' to see the available ones."
        if self.failed_plugins:
            failed = "; ".join(f"{p} ({err})" for p, err in sorted(self.failed_plugins.items()))
            msg += f" These plugins failed to load and may have provided it: {failed}."
        return msg


class PluginRegistryView:
    """What a plugin's ``cifarbudget_register_*`` hook receives: ``add`` plus read access."""

    def __init__(self, registry: Registry, plugin: str) -> None:
        self._registry = registry
        self._plugin = plugin

    @property
    def kind(self) -> str:
        return self._registry.kind

    def add(self, name: str, factory: Callable[..., Any], *, description: str = "") -> None:
        """Register ``factory`` under ``name`` (lower-case, unique across all plugins)."""
        self._registry.add(name, factory, description=description, plugin=self._plugin)

    def names(self, pattern: str | None = None) -> list[str]:
        return self._registry.names(pattern)

    def __contains__(self, name: object) -> bool:
        return name in self._registry


class LazyFactory:
    """A factory that imports its implementation on the first call: ``lazy("pkg.mod:name", *args)``.

    Registering ``lazy("cifarbudget.nets.resnet:cifar_resnet", 20)`` costs no import, so listing
    names (``cifarbudget list``) never imports torch; calling it imports ``pkg.mod`` and returns
    ``name(*args, *call_args, **kwargs, **call_kwargs)``. Third-party plugins can use it too.
    """

    def __init__(self, target: str, *args: Any, **kwargs: Any) -> None:
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise PluginError(f"lazy factory target {target!r} is not 'package.module:name'")
        self.target, self.args, self.kwargs = target, args, kwargs

    def resolve(self) -> Callable[..., Any]:
        """The implementation itself (importing its module)."""
        import importlib

        module, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*self.args, *args, **{**self.kwargs, **kwargs})

    def __getattr__(self, name: str) -> Any:
        """Optional protocol attributes of the implementation (e.g. a dataset's ``num_classes``)."""
        if name.startswith("__") or name in ("target", "args", "kwargs"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        bound = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"lazy({', '.join([repr(self.target), *bound])})"


def lazy(target: str, *args: Any, **kwargs: Any) -> LazyFactory:
    """Shorthand for :class:`LazyFactory`."""
    return LazyFactory(target, *args, **kwargs)


# what a factory raises on a value of the wrong type or out of its range when it does not check
# the value itself ('<=' between a str and a float, int('abc'), 1 / 0, torch's negative dimension)
VALUE_ERRORS = (TypeError, ValueError, ArithmeticError, RuntimeError)


def _note_plugin(exc: BaseException, what: str, plugin: str | None) -> None:
    """Mark an exception from a plugin's factory with ``what`` and its plugin (:func:`note_source`:
    the one-line error and the traceback show it; the type and message stay the factory's own)."""
    note_source(exc, f"raised by the factory of {what}" + (f", plugin {plugin!r}" if plugin else ""))


# Which plugin registered a factory: set by cifarbudget.plugins (which imports this module, so
# the lookup is handed over rather than imported: no import circle).
PROVIDER_LOOKUP: list[Callable[[object], str | None]] = []


def _plugin_of(factory: object) -> str | None:
    """The plugin that registered ``factory`` in the process-wide plugin system, if one did."""
    return next((found for lookup in PROVIDER_LOOKUP if (found := lookup(factory))), None)


def _factory_name(factory: Callable[..., Any]) -> str:
    """``module.function`` (or the lazy target) of a factory, for messages."""
    if isinstance(factory, LazyFactory):
        return factory.target
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else repr(factory)


def call_with_params(
    what: str, factory: Callable[..., Any], params: Mapping[str, Any], /, *args: Any, **run_args: Any
) -> Any:
    """``factory(*args, **run_args, **params)``, where ``params`` are the user's (``--*-param``).

    A :data:`VALUE_ERRORS` exception from the call, when the user gave parameters, is a value the
    factory could not use: it becomes one :class:`RunError` line naming ``what`` and the values
    given, with the factory's own message. Without parameters it is the factory's bug and
    propagates as it is, with a note naming ``what`` and its plugin; the library's own errors
    always propagate as they are.
    """
    flags = flag_params(factory)
    for key, value in params.items():  # "False" or 0 would otherwise count as true
        if key in flags and not isinstance(value, bool):
            raise RunError(f"{what}: {key} must be true or false, got {value!r}")
    try:
        return factory(*args, **run_args, **params)
    except Exception as exc:
        if not params or not isinstance(exc, VALUE_ERRORS) or isinstance(exc, CifarBudgetError):
            _note_plugin(exc, what, _plugin_of(factory))
            raise
        given = ", ".join(f"{key}={value!r}" for key, value in params.items())
        raise RunError(
            f"{what}: a parameter value it cannot use ({given}): {describe(exc, with_type=False)}"
        ) from exc


def flag_params(factory: Callable[..., Any]) -> set[str]:
    """The parameters of ``factory`` that are flags: a ``True``/``False`` default, annotated
    ``bool`` or not annotated. A user's value for one must be a bool (:func:`call_with_params`):
    a factory that tests ``if flag`` or calls ``bool(flag)`` reads the text ``"False"`` as true."""
    target = factory.resolve() if hasattr(factory, "resolve") else factory
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return set()
    plain = (inspect.Parameter.empty, bool, "bool")
    return {n for n, p in sig.parameters.items() if isinstance(p.default, bool) and p.annotation in plain}


def accepted_params(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword parameters ``factory`` takes; ``None`` when it takes any (``**kwargs``, or no
    signature to read). Lazy factories are resolved."""
    target = factory.resolve() if hasattr(factory, "resolve") else factory
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {n for n, p in sig.parameters.items() if p.kind in kinds}


def bound_params(factory: Callable[..., Any], *, positional_only: bool = False) -> dict[str, Any]:
    """The parameters a registration binds, by name: a :class:`LazyFactory`'s arguments (empty
    for any other factory). Those bound by position are fixed (``resnet20`` is ``cifar_resnet``
    with ``depth=20``: a second ``depth`` cannot be passed); those bound by keyword are defaults a
    parameter may override (``airnet-small``'s ``widths``). ``positional_only``: only the fixed."""
    if not isinstance(factory, LazyFactory):
        return {}
    kwargs = {} if positional_only else factory.kwargs
    try:
        return dict(inspect.signature(factory.resolve()).bind_partial(*factory.args, **kwargs).arguments)
    except (TypeError, ValueError):
        return dict(kwargs)


def leading_params(factory: Callable[..., Any], count: int) -> list[str]:
    """The names of ``factory``'s first ``count`` parameters that can be passed by position (the
    run passes a scheduler's optimizer that way, whatever the factory calls it); empty when the
    signature cannot be read."""
    target = factory.resolve() if isinstance(factory, LazyFactory) else factory
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    by_position = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [n for n, p in sig.parameters.items() if p.kind in by_position][:count]


def required_params(
    factory: Callable[..., Any], given: Collection[str] = (), supplied: Collection[str] = ()
) -> list[str]:
    """The keyword parameters ``factory`` cannot be called without: no default, not bound by its
    registration (:func:`bound_params`), and neither ``given`` nor ``supplied`` by the run. Empty
    when the signature cannot be read (the call then decides)."""
    target = factory.resolve() if isinstance(factory, LazyFactory) else factory
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    skip = {*bound_params(factory), *given, *supplied}
    return [
        n for n, p in sig.parameters.items() if p.kind in kinds and p.default is p.empty and n not in skip
    ]


def check_params(
    what: str,
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    supplied: Collection[str] = (),
    *,
    flag: str = "",
    positional: int = 0,
) -> None:
    """Raise :class:`RunError` if ``factory`` has no keyword parameter for a key of ``params``, or
    needs one that ``params`` lacks.

    ``what`` names the factory in the message (``"optimizer 'sam'"``). ``supplied`` are the
    parameters the run passes itself (a schedule's ``epochs``, an optimizer's ``lr``: see
    :data:`cifarbudget.identity.RUN_SUPPLIED`): a key among them is an error of its own, and they
    are not listed as parameters the user can set. Factories that take ``**kwargs`` accept every
    other name (their own check then applies). A parameter the registration binds by position
    (``resnet20``'s ``depth``) cannot be set either. A parameter without a default that nobody passes
    (``kd`` without ``teacher``) is named with how to pass it: ``flag`` is what precedes
    ``NAME=VALUE`` on the command line (``"--loss-param "``, ``"--aug-param cutmix."``), unless
    it misspells one the run passes (``steps_per_epochs``): that is the plugin's
    :class:`PluginError`, naming the plugin, the factory and both names (:func:`_check_signature`).
    The first ``positional`` parameters are the run's too, passed by position whatever their names
    (:data:`cifarbudget.identity.RUN_POSITIONAL`: ``opt`` for ``optimizer``). Lazy factories are
    resolved.
    """
    supplied = {*supplied, *leading_params(factory, positional)}
    clash = sorted(set(params) & supplied)
    if clash:
        raise RunError(
            f"{what}: {', '.join(clash)} {'is' if len(clash) == 1 else 'are'} set by the run (its own "
            "option, or the data), not by a parameter"
        )
    fixed = bound_params(factory, positional_only=True)
    taken = sorted(set(params) & set(fixed))
    if taken:
        values = ", ".join(f"{name}={fixed[name]!r}" for name in taken)
        raise RunError(
            f"{what}: {', '.join(taken)} {'is' if len(taken) == 1 else 'are'} fixed by its name ({values})"
        )
    known = accepted_params(factory)
    if known is not None:
        unknown = sorted(set(params) - known)
        if unknown:
            accepted = ", ".join(sorted(known - supplied - set(fixed)))
            raise RunError(f"{what} has no parameter {', '.join(unknown)} (it takes: {accepted or 'none'})")
    missing = required_params(factory, params, supplied)
    _check_signature(what, factory, missing, supplied)
    if missing:
        how = f"; pass {' '.join(f'{flag}{name}=VALUE' for name in missing)}" if flag else ""
        raise RunError(
            f"{what} needs {', '.join(missing)}, which {'has' if len(missing) == 1 else 'have'} no default{how}"
        )


def _check_signature(
    what: str, factory: Callable[..., Any], missing: list[str], supplied: Collection[str]
) -> None:
    """Raise :class:`PluginError` if a parameter ``factory`` needs and nobody passes is a misspelling
    of one the run passes itself and the factory does not declare (``steps_per_epochs`` for
    ``steps_per_epoch``): the plugin's signature is wrong, no ``--*-param`` can fix it."""
    if not missing or not supplied:
        return
    target = factory.resolve() if isinstance(factory, LazyFactory) else factory
    offered = sorted(set(supplied) - set(inspect.signature(target).parameters))
    # a high cutoff: a typo (steps_per_epochs, momentun), not a parameter of its own (warmup)
    pairs = [(name, difflib.get_close_matches(name, offered, n=1, cutoff=0.8)) for name in missing]
    declared = [name for name, close in pairs if close]
    if not declared:
        return
    passed = [close[0] for _, close in pairs if close]
    plugin = _plugin_of(factory)
    raise PluginError(
        f"{what}{f' (plugin {plugin!r})' if plugin else ''}: its factory {_factory_name(factory)} does "
        f"not match what the library passes: it declares {', '.join(declared)} where the library passes "
        f"{', '.join(passed)}"
    )

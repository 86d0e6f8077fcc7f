"""The plugin manager: built-ins, entry points, failures, listing.

Plugins load lazily, once, on first use. Built-in backends and explainers are ordinary
plugins registered exactly like third-party ones (their hooks are ``trylast``, so an
installed plugin's backend takes precedence). Environment variables:

``LIMELIGHT_DISABLE_PLUGINS=a,b``
    block plugins by entry-point (or built-in module) name.
``LIMELIGHT_STRICT_PLUGINS=1``
    re-raise a plugin's import or registration error instead of warning and skipping it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, PluginWarning, UnknownExplainerError, UnknownModelError, close_matches
from .explainer import Explainer
from .model import Model

#: The spec forms the built-in loaders (``limelight.zoo``) read.
KNOWN_FORMS = "torchvision:NAME, keras:NAME, a TorchScript .pt file, a .keras file, or package.module:factory"

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "Registry", "registry"]

ENTRY_POINT_GROUP = "limelight"
BUILTIN_PLUGINS = (
    "limelight.backends.torch",
    "limelight.backends.tensorflow",
    "limelight.plugins.cam",
    "limelight.plugins.shap",
    "limelight.plugins.gradient_free",
    "limelight.zoo.torch",
    "limelight.zoo.keras",
    "limelight.zoo.specs",
    "limelight.evaluation.metrics",
)
#: Earlier names of built-in plugins, still honoured by ``LIMELIGHT_DISABLE_PLUGINS``.
FORMER_NAMES = {
    "limelight.zoo.specs": ("limelight.core.loading",),
    "limelight.evaluation.metrics": ("limelight.plugins.metrics",),
}
#: The base class every registered metric derives from, by qualified name: core never
#: imports the evaluation package (DESIGN.md: core depends on nothing below it).
METRIC_BASE = "limelight.evaluation.metric.Metric"
STRICT_ENV = "LIMELIGHT_STRICT_PLUGINS"
DISABLE_ENV = "LIMELIGHT_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as :func:`limelight.plugins` reports it."""

    name: str
    source: str  # "builtin" or "entry point"
    distribution: str | None = None
    version: str | None = None
    backend: bool = False  # implements limelight_wrap_model
    loader: bool = False  # implements limelight_load_model (model specs)
    explainers: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    error: str | None = None  # why it was skipped, if it was

    @property
    def provides(self) -> str:
        parts = ["backend"] if self.backend else []
        if self.loader:
            parts.append("model specs")
        if self.explainers:
            parts.append("explainers: " + ", ".join(self.explainers))
        if self.metrics:
            parts.append("metrics: " + ", ".join(self.metrics))
        return "; ".join(parts) or "-"


@dataclass
class _Record:
    name: str
    source: str
    distribution: str | None = None
    version: str | None = None
    explainers: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    error: str | None = None


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


class Registry:
    """Loads plugins once and answers: which backend wraps a model, which explainer has a name."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        self._records: dict[str, _Record] = {}
        self._explainers: dict[str, tuple[type[Explainer], str]] = {}
        self._metrics: dict[str, tuple[type, str]] = {}

    # -- loading -------------------------------------------------------------------------
    @property
    def pm(self) -> pluggy.PluginManager:
        """The loaded :class:`pluggy.PluginManager` (loading plugins on first access)."""
        with self._lock:
            if self._pm is None:
                self._load()
            assert self._pm is not None
            return self._pm

    def reset(self) -> None:
        """Forget everything; the next use loads plugins again (for tests and reloads)."""
        with self._lock:
            self._pm = None
            self._records.clear()
            self._explainers.clear()
            self._metrics.clear()

    def _load(self) -> None:
        """Load every plugin into local tables and commit them only when loading finished, so
        that a failure (strict mode) leaves the registry empty rather than half-loaded."""
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        records: dict[str, _Record] = {}
        disabled = _disabled()
        for module_name in BUILTIN_PLUGINS:
            if disabled.intersection((module_name, *FORMER_NAMES.get(module_name, ()))):
                continue
            records[module_name] = _Record(module_name, "builtin", "limelight", _version())
            pm.register(importlib.import_module(module_name), name=module_name)
        pm.check_pending()  # the built-ins' hooks are all specified
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in records or pm.is_blocked(ep.name):
                continue
            if ep.name in disabled:
                pm.set_blocked(ep.name)
                continue
            dist = getattr(ep, "dist", None)
            record = _Record(
                ep.name,
                "entry point",
                distribution=dist.metadata["Name"] if dist else None,
                version=dist.version if dist else None,
            )
            records[ep.name] = record
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break limelight
                _fail(record, exc, "failed to load", ep.value)
                continue
            try:
                pm.register(plugin, name=ep.name)
                pm.check_pending()  # earlier plugins passed: an unknown hook is this one's
            except Exception as exc:  # noqa: BLE001 - e.g. pluggy.PluginValidationError
                if pm.get_plugin(ep.name) is not None:
                    pm.unregister(name=ep.name)
                _fail(record, exc, "is not a valid limelight plugin", ep.value)
        explainers: dict[str, tuple[Any, str]] = {}
        metrics: dict[str, tuple[Any, str]] = {}
        tables = {"explainers": explainers, "metrics": metrics}
        _collect(pm, records, "limelight_register_explainers", tables, _subclass_of(Explainer), "explainers")
        _collect(pm, records, "limelight_register_metrics", tables, _subclass_named(METRIC_BASE), "metrics")
        self._pm, self._records = pm, records
        self._explainers, self._metrics = explainers, metrics

    # -- queries ---------------------------------------------------------------------------
    def wrap(self, model: object) -> Model | None:
        """The first backend's :class:`Model` for ``model``, or None if no backend takes it."""
        return self.pm.hook.limelight_wrap_model(model=model)

    def load_model(self, spec: str, weights: str | None = None) -> hookspecs.LoadedModel:
        """The first ``limelight_load_model`` plugin's model for ``spec`` (a file path,
        ``torchvision:NAME``, ...); an :class:`UnknownModelError` when none loads it."""
        loaded: hookspecs.LoadedModel | None = self.pm.hook.limelight_load_model(spec=spec, weights=weights)
        if loaded is None:
            raise UnknownModelError(f"no plugin can load the model spec {spec!r}. Known forms: {KNOWN_FORMS}.")
        return loaded

    def explainer(self, name: str) -> type[Explainer]:
        """The explainer class registered as ``name``."""
        self.pm  # noqa: B018 - load plugins
        try:
            return self._explainers[name][0]
        except KeyError:
            names = sorted(self._explainers)
            raise UnknownExplainerError(
                f"unknown method {name!r}."
                + close_matches(name, names)
                + f" Registered methods: {', '.join(names)}."
            ) from None

    @contextlib.contextmanager
    def temporarily(self, *explainers: type[Explainer], owner: str) -> Iterator[None]:
        """Register ``explainers`` (recorded as from ``owner``) for the duration of the block,
        as if a plugin had; a name another class holds is a ``ValueError``. The table is as
        before afterwards (for tests: :func:`limelight.testing.registered`)."""
        from .explainer import Explainer

        self.pm  # noqa: B018 - load the plugins first
        with self._lock:
            for cls in explainers:
                if not (isinstance(cls, type) and issubclass(cls, Explainer) and isinstance(getattr(cls, "name", None), str)):
                    raise TypeError(f"expected Explainer subclasses with a string name, got {cls!r}")
                taken = self._explainers.get(cls.name)
                if taken is not None and taken[0] is not cls:
                    raise ValueError(f"explainer name {cls.name!r} is already registered by {taken[1]!r}")
            added = [cls for cls in explainers if cls.name not in self._explainers]
            for cls in added:
                self._explainers[cls.name] = (cls, owner)
        try:
            yield
        finally:
            with self._lock:
                for cls in added:
                    if self._explainers.get(cls.name, (None, None))[0] is cls:
                        del self._explainers[cls.name]

    def explainers(self) -> dict[str, type[Explainer]]:
        """Every registered explainer by name."""
        self.pm  # noqa: B018
        return {name: cls for name, (cls, _) in sorted(self._explainers.items())}

    def metrics(self) -> dict[str, type]:
        """Every registered metric by name."""
        self.pm  # noqa: B018
        return {name: cls for name, (cls, _) in sorted(self._metrics.items())}

    def plugins(self) -> list[PluginInfo]:
        """Every plugin found (loaded or skipped) and what each provides."""
        pm = self.pm
        infos = []
        for record in self._records.values():
            plugin = pm.get_plugin(record.name)
            backend, loader = (
                plugin is not None and any(impl.plugin is plugin for impl in hook.get_hookimpls())
                for hook in (pm.hook.limelight_wrap_model, pm.hook.limelight_load_model)
            )
            infos.append(
                PluginInfo(
                    name=record.name,
                    source=record.source,
                    distribution=record.distribution,
                    version=record.version,
                    backend=backend,
                    loader=loader,
                    explainers=tuple(record.explainers),
                    metrics=tuple(record.metrics),
                    error=record.error,
                )
            )
        return infos


#: The process-wide registry behind :func:`limelight.explain` and friends.
registry = Registry()


def _fail(record: _Record, exc: BaseException, what: str, target: str | None = None) -> None:
    """Record why a plugin is skipped and warn, naming its entry point (or raise, strict)."""
    record.error = f"{type(exc).__name__}: {exc}"
    where = "" if target is None else f" (entry point {record.name} = {target})"
    if _strict():
        raise PluginError(f"limelight plugin {record.name!r} {what}{where}: {record.error}") from exc
    warnings.warn(
        f"limelight plugin {record.name!r} {what}{where} and is skipped: {record.error} "
        f"(block it with {DISABLE_ENV}={record.name}; set {STRICT_ENV}=1 to raise)",
        PluginWarning,
        stacklevel=5,
    )


def _collect(
    pm: pluggy.PluginManager,
    records: dict[str, _Record],
    hook_name: str,
    tables: dict[str, dict[str, tuple[Any, str]]],
    base: tuple[str, Callable[[type], bool]],
    kind: str,
) -> None:
    """Call one registration hook plugin by plugin (through pluggy, one plugin at a time), so
    every name knows its owner. Plugins are asked in loading order (built-ins first); a
    plugin that registers something invalid or a name already taken is skipped whole: it is
    unregistered and what it registered before is dropped.

    ``base`` is the name of the base class registered classes must derive from, and the
    check that they do."""
    base_name, derives = base
    table = tables[kind]
    for owner, record in records.items():
        plugin = pm.get_plugin(owner)
        hook = getattr(pm.hook, hook_name)
        if plugin is None or not any(impl.plugin is plugin for impl in hook.get_hookimpls()):
            continue
        others = [p for name, p in pm.list_name_plugin() if name != owner]
        found: list[Any] = []
        try:
            pm.subset_hook_caller(hook_name, remove_plugins=others)(register=found.append)
            for cls in found:
                if not (isinstance(cls, type) and derives(cls)) or not isinstance(getattr(cls, "name", None), str):
                    raise PluginError(
                        f"registered {cls!r}, which is not a {base_name} subclass with a string `name`"
                    )
            names = [cls.name for cls in found]
            for cls in found:
                taken = table.get(cls.name)
                if (taken is not None and taken[0] is not cls) or names.count(cls.name) > 1:
                    by = f"plugin {taken[1]!r} ({taken[0].__qualname__})" if taken else "this plugin"
                    raise PluginError(
                        f"{kind[:-1]} name {cls.name!r} ({cls.__qualname__}) is already registered by {by}"
                    )
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break limelight
            entry = None if record.source == "builtin" else _entry_point_value(owner)
            _fail(record, exc, f"failed to register {kind}", entry)
            pm.unregister(name=owner)
            for other_kind, other in tables.items():
                for name in getattr(record, other_kind):
                    other.pop(name, None)
                getattr(record, other_kind).clear()
            continue
        for cls in found:
            table[cls.name] = (cls, owner)
            getattr(record, kind).append(cls.name)


def _entry_point_value(name: str) -> str | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        return ep.value
    return None


def _subclass_of(base: type) -> tuple[str, Callable[[type], bool]]:
    return base.__name__, lambda cls: issubclass(cls, base)


def _subclass_named(qualified: str) -> tuple[str, Callable[[type], bool]]:
    """A subclass check against a class known by its qualified name only, so that the check
    does not import the class's module."""
    return qualified.rpartition(".")[2], lambda cls: any(
        f"{c.__module__}.{c.__qualname__}" == qualified for c in cls.__mro__
    )


def _version() -> str:
    from .._version import __version__

    return __version__

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

import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, PluginWarning, UnknownExplainerError, close_matches
from .explainer import Explainer
from .model import Model

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "Registry", "registry"]

ENTRY_POINT_GROUP = "limelight"
BUILTIN_PLUGINS = (
    "limelight.backends.torch",
    "limelight.backends.tensorflow",
    "limelight.plugins.cam",
    "limelight.plugins.shap",
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
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        records: dict[str, _Record] = {}
        disabled = _disabled()
        for module_name in BUILTIN_PLUGINS:
            if disabled.intersection((module_name, *FORMER_NAMES.get(module_name, ()))):
                continue
            records[module_name] = _Record(module_name, "builtin", "limelight", _version())
            pm.register(importlib.import_module(module_name), name=module_name)
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
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break limelight
                self._fail(record, exc, "failed to load")
        pm.check_pending()
        self._pm, self._records = pm, records
        self._collect(pm, "limelight_register_explainers", self._explainers, _subclass_of(Explainer), "explainers")
        self._collect(pm, "limelight_register_metrics", self._metrics, _subclass_named(METRIC_BASE), "metrics")

    def _fail(self, record: _Record, exc: BaseException, what: str) -> None:
        record.error = f"{type(exc).__name__}: {exc}"
        if _strict():
            raise PluginError(f"limelight plugin {record.name!r} {what}: {record.error}") from exc
        warnings.warn(
            f"limelight plugin {record.name!r} {what} and is skipped: {record.error} "
            f"(set {STRICT_ENV}=1 to raise)",
            PluginWarning,
            stacklevel=4,
        )

    def _collect(
        self,
        pm: pluggy.PluginManager,
        hook_name: str,
        table: dict[str, tuple[Any, str]],
        base: tuple[str, Callable[[type], bool]],
        kind: str,
    ) -> None:
        """Call one registration hook plugin by plugin, so every name knows its owner.

        ``base`` is the name of the base class registered classes must derive from, and the
        check that they do."""
        base_name, derives = base
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            owner = impl.plugin_name
            found: list[Any] = []
            register: Callable[[Any], None] = found.append
            try:
                impl.function(**{arg: register for arg in impl.argnames})
                for cls in found:
                    if not (isinstance(cls, type) and derives(cls)) or not isinstance(
                        getattr(cls, "name", None), str
                    ):
                        raise PluginError(
                            f"registered {cls!r}, which is not a {base_name} subclass with a "
                            "string `name`"
                        )
            except Exception as exc:  # noqa: BLE001
                self._fail(self._records[owner], exc, f"failed to register {kind}")
                pm.unregister(name=owner)
                continue
            for cls in found:
                if cls.name in table and table[cls.name][0] is not cls:
                    raise PluginError(
                        f"{kind[:-1]} name {cls.name!r} is registered twice: by plugin "
                        f"{table[cls.name][1]!r} ({table[cls.name][0].__qualname__}) and by plugin "
                        f"{owner!r} ({cls.__qualname__}). Uninstall one, or block it with "
                        f"{DISABLE_ENV}={owner}."
                    )
                table[cls.name] = (cls, owner)
                getattr(self._records[owner], kind).append(cls.name)

    # -- queries ---------------------------------------------------------------------------
    def wrap(self, model: object) -> Model | None:
        """The first backend's :class:`Model` for ``model``, or None if no backend takes it."""
        return self.pm.hook.limelight_wrap_model(model=model)

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

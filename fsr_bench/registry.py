"""One small generic registry, shared by super-resolvers and face recognisers.

Modelled on timm's ``register_model`` / ``create_model`` / ``list_models``: a name maps to a builder
callable; duplicate names are an error; an unknown name is an error that lists close matches.
Third-party packages add entries through a Python entry-point group (``fsr_bench.models`` for
super-resolvers): loading the entry point imports the plug-in module, whose decorators register.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Generic, Iterable, TypeVar

from fsr_bench.errors import FsrBenchError

T = TypeVar("T", bound=Callable)


class RegistryError(KeyError, FsrBenchError):
    """An unknown or duplicate registry name (a KeyError so ``except KeyError`` still works)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    builder: T
    source: str  # module that registered it: "fsr_bench.models.tanet", "baselines.nlsn", a plug-in …
    tiny: dict | None = None  # config overrides for a small, fast instance (registry-wide tests)
    # config values assumed for keys a saved config lacks: fields added after checkpoints existed
    # whose new default would change what an old checkpoint computes
    checkpoint_defaults: dict | None = None


class Registry(Generic[T]):
    """Name → builder, with lazy loading of built-in modules and entry-point plug-ins."""

    def __init__(self, kind: str, entry_point_group: str, builtin_modules: Iterable[str] = (),
                 listing: str = ""):
        self.kind = kind
        self.listing = listing  # the command that lists the names (an unknown name's hint); "" = list them inline
        self.entry_point_group = entry_point_group
        self._builtin_modules = tuple(builtin_modules)
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._loading = False
        self._plugin_errors: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------------
    def register(
        self, name: str | None = None, tiny: dict | None = None, checkpoint_defaults: dict | None = None
    ) -> Callable[[T], T]:
        """Decorator: ``@registry.register()`` (uses the function name) or ``register("name")``.

        ``tiny`` holds config overrides that make a small instance of the same architecture; the
        registry-parametrised tests build every model with them, so a plug-in is tested for free.
        """

        def decorator(builder: T) -> T:
            key = name or builder.__name__
            if key in self._entries:
                prev = self._entries[key].source
                raise RegistryError(
                    f"{self.kind} {key!r} is already registered (by {prev}); "
                    f"choose another name for the one in {builder.__module__}"
                )
            self._entries[key] = Entry(key, builder, builder.__module__, tiny, checkpoint_defaults)
            return builder

        return decorator

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    # -- loading ------------------------------------------------------------------------------
    def load_plugins(self, force: bool = False) -> None:
        """Import built-in modules, then every entry point of the group (once)."""
        if (self._loaded and not force) or self._loading:
            return
        self._loading = True
        try:
            import importlib

            for module in self._builtin_modules:
                importlib.import_module(module)
            for ep in metadata.entry_points(group=self.entry_point_group):
                if ep.value.split(":")[0] in self._builtin_modules and not force:
                    continue
                try:
                    ep.load()
                except RegistryError:
                    raise
                except Exception as exc:  # a broken plug-in must not hide the others; report it
                    self._plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
            self._loaded = True
        finally:
            self._loading = False

    @property
    def loaded(self) -> bool:
        """Built-ins and plug-ins imported in this process (so :meth:`names` is cheap and complete)."""
        return self._loaded

    @property
    def plugin_errors(self) -> dict[str, str]:
        """Entry points that failed to import: name → error (shown by ``fsr-bench list``)."""
        return dict(self._plugin_errors)

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> Entry[T]:
        self.load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            broken = (
                f" (plug-ins that failed to load: {self._plugin_errors})" if self._plugin_errors else ""
            )
            known = (f" `{self.listing}` shows all {len(self._entries)} registered names." if self.listing
                     else f" Registered: {', '.join(sorted(self._entries))}.")
            raise RegistryError(f"unknown {self.kind} {name!r}.{hint}{known}{broken}")
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        self.load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        self.load_plugins()
        return name in self._entries

"""The models a server deploys: aliases resolved through the registry, bundles loaded lazily.

:class:`ServedModels` ties the serving slices together for the HTTP layer:

- the **registry** says which models exist, which aliases they have and which bundle each
  version is (every registered model that has an alias is served, or only the ``models``
  subset);
- the **router** turns a request's model and alias/version into a :class:`Decision` (one route
  per alias, the alias's version at weight 1);
- the **model cache** loads a version's bundle on first use (verifying every hash) and unloads
  the least recently used ones beyond the memory budget.

Metadata (signature, versions) is read from the bundle manifest without loading the model.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.exceptions import NotFoundError
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.modeling.bundle_manifest import BundleManifest, read_manifest
from conveyor.registry import ModelRegistry
from conveyor.serving.model_cache import ModelCache
from conveyor.serving.protocols.errors import ProtocolError, not_found
from conveyor.serving.router import Decision, Route, Router, RoutingError

__all__ = ["ServedModel", "ServedModels", "bundle_size_bytes"]

logger = logging.getLogger(__name__)


def bundle_size_bytes(folder: str | Path) -> int:
    """Bytes of every file in a bundle folder: the memory charge of a loaded bundle."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


@dataclass(frozen=True)
class ServedModel:
    """A loaded bundle and its memory charge (what :class:`ModelCache` holds)."""

    bundle: LoadedBundle
    size_bytes: int


class ServedModels:
    """Alias -> version resolution, lazy loading and metadata for the served models.

    Args:
        registry: The model registry (its store must stay open while serving).
        models: Serve only these names (default: every registered model with an alias).
        memory_budget_bytes: Memory budget of the model cache.

    Raises:
        NotFoundError: A name in ``models`` is not registered or has no alias.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        models: Sequence[str] | None = None,
        memory_budget_bytes: int,
    ) -> None:
        self.registry = registry
        self._only = list(models) if models is not None else None
        self._lock = threading.Lock()  # the registry's store is used from many threads
        self.router = Router()
        self.cache: ModelCache[ServedModel] = ModelCache(self._load, memory_budget_bytes)
        self._uris: dict[tuple[str, int], str] = {}
        self._failed: set[tuple[str, int]] = set()
        self.refresh()

    # -- registry -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read models, aliases and versions from the registry and update the routes."""
        with self._lock:
            summaries = {s.name: s for s in self.registry.models()}
            names = self._only if self._only is not None else sorted(summaries)
            for name in names:
                summary = summaries.get(name)
                if summary is None or not summary.aliases:
                    raise NotFoundError(f"model {name!r} is not registered or has no alias")
                versions = {v.version for v in self.registry.list(name)}
                versions.update(summary.aliases.values())
                self.router.set_versions(name, versions)
                for alias, version in summary.aliases.items():
                    self.router.update(name, Route(alias, {version: 1.0}))

    def names(self) -> list[str]:
        """The served model names, sorted."""
        return self.router.models()

    def _uri(self, model: str, version: int) -> str:
        key = (model, version)
        uri = self._uris.get(key)
        if uri is None:
            with self._lock:
                try:
                    uri = self.registry.get(model, version).artifact_uri
                except NotFoundError:
                    raise not_found(f"model {model!r} has no version {version}") from None
            self._uris[key] = uri
        return uri

    def _load(self, model: str, version: int) -> ServedModel:
        """The cache's loader: the version's bundle, every hash verified."""
        uri = self._uri(model, version)
        try:
            bundle = load_bundle(uri, verify=True)
        except Exception:
            self._failed.add((model, version))
            raise
        self._failed.discard((model, version))
        logger.info("loaded %s version %d from %s", model, version, uri)
        return ServedModel(bundle, bundle_size_bytes(uri))

    # -- requests -------------------------------------------------------------------------

    def resolve(self, model: str, ref: str | None = None) -> Decision:
        """The version that answers ``model`` at ``ref`` (an alias, a version or None).

        Raises:
            ProtocolError: 404 naming the unknown model, alias or version.
        """
        try:
            return self.router.choose(model, ref)
        except RoutingError as exc:
            raise ProtocolError(404, str(exc)) from None

    @contextlib.contextmanager
    def use(self, model: str, version: int) -> Iterator[LoadedBundle]:
        """The loaded bundle of one version, pinned for the ``with`` block."""
        with self.cache.use(model, version) as served:
            yield served.bundle

    def manifest(self, model: str, version: int) -> BundleManifest:
        """A version's manifest, read without loading the model."""
        return read_manifest(self._uri(model, version))

    def deployed(self) -> list[tuple[str, int]]:
        """Every ``(model, version)`` an alias routes to."""
        keys: set[tuple[str, int]] = set()
        for name in self.names():
            for route in self.router.routes(name).values():
                keys.update((name, v) for v in route.versions)
        return sorted(keys)

    def preload(self) -> None:
        """Load every deployed version now (failures are logged, not raised)."""
        for model, version in self.deployed():
            try:
                self.cache.get(model, version)
            except Exception as exc:
                logger.warning("could not load %s version %d: %s", model, version, exc)

    def ready(self, model: str, version: int) -> bool:
        """Whether a version can answer: it is served and its last load did not fail."""
        return version in self.router.versions(model) and (model, version) not in self._failed

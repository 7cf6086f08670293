"""The models a server deploys: aliases resolved through the registry, bundles loaded lazily.

:class:`ServedModels` ties the serving slices together for the HTTP layer:

- the **registry** says which models exist, which aliases they have and which bundle each
  version is (every registered model that has an alias is served, or only the ``models``
  subset);
- the **router** turns a request's model and alias/version into a :class:`Decision`: one route
  per alias, built from :meth:`ModelRegistry.resolved_routes` -- the alias's own version at
  weight 1, or the versions of its traffic split with their weights and shadows;
- the **model cache** loads a version's bundle on first use (verifying every hash) and unloads
  the least recently used ones beyond the memory budget.

Metadata (signature, versions) is read from the bundle manifest without loading the model.
:meth:`ServedModels.refresh` re-reads the aliases and traffic splits while serving (hot
reload: load every version of the new route, then swap the route, then unload what no route
uses any more when idle).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.exceptions import NotFoundError
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.modeling.bundle_manifest import BundleManifest, read_manifest
from conveyor.registry import ModelRegistry, RouteTargets
from conveyor.serving.model_cache import ModelCache
from conveyor.serving.protocols.errors import ProtocolError, not_found
from conveyor.serving.router import Decision, Route, Router, RoutingError

__all__ = ["ServedModel", "ServedModels", "bundle_size_bytes"]

logger = logging.getLogger(__name__)

RETIRE_GRACE_S = 10.0
"""Seconds after a hot reload during which a retired version loaded again by a late request
is unloaded when that request ends."""


def _weights_text(weights: Mapping[int, float]) -> str:
    """``{3: 0.9, 4: 0.1}`` -> ``"v3 90%, v4 10%"``."""
    total = sum(weights.values()) or 1.0
    return ", ".join(f"v{v} {100 * w / total:.4g}%" for v, w in sorted(weights.items()))


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
        self._manifests: dict[tuple[str, int], BundleManifest] = {}  # a version never changes
        self._failed: set[tuple[str, int]] = set()
        self._refresh_lock = threading.Lock()
        self._refreshed = False
        self._revision: int | None = None  # the registry's revision the last refresh read
        self._incomplete = False  # a version failed to load in the last refresh
        self._retired_lock = threading.Lock()
        self._retired: dict[tuple[str, int], float] = {}  # key -> end of its grace period
        self.refresh()

    # -- registry -------------------------------------------------------------------------

    def refresh(self, revision: int | None = None) -> None:
        """Re-read models, aliases, traffic splits and versions and apply them live.

        ``revision`` is the registry's revision read just before (by
        :meth:`refresh_if_changed`); by default it is read here.

        The first call (from the constructor) only sets the routes; versions load lazily or
        through :meth:`preload`. Every later call is a hot reload:

        - every version a changed route needs (weighted or shadow) is loaded first, and only
          then does the route swap (an atomic :meth:`Router.update`), so no request waits for
          a load or fails during the swap; a route whose weights and shadows are unchanged is
          left alone;
        - a version that fails to load is logged and the route keeps what it had (a new
          model stays unserved); the next refresh tries again;
        - removed aliases and models disappear; a version no route mentions any more is
          evicted without waiting: it unloads when its in-flight requests end.

        Refreshes never run concurrently (the watcher and a direct call serialize).

        Raises:
            NotFoundError: On the first call, a name in ``models`` is not registered or has
                no alias (later, such a model is dropped with a warning).
        """
        with self._refresh_lock:
            initial = not self._refreshed
            if revision is None:
                revision = self.registry.revision()
            wanted = self._read_registry(initial)
            before = set(self.deployed())
            complete = True
            for name, (routes, versions) in wanted.items():
                complete &= self._apply(name, routes, versions, load=not initial)
            self._revision, self._incomplete = revision, not complete
            for name in self.router.models():
                if name not in wanted:
                    self.router.remove(name)
            self._refreshed = True
            after = set(self.deployed())
            with self._retired_lock:
                for key in after:
                    self._retired.pop(key, None)
                deadline = time.monotonic() + RETIRE_GRACE_S
                for key in before - after:
                    self._retired[key] = deadline
            for model, version in sorted(before - after):
                if self.cache.evict(model, version):
                    logger.info("%s version %d is no longer deployed: unloading", model, version)

    def refresh_if_changed(self) -> bool:
        """:meth:`refresh` when the registry changed since the last one; True when it ran.

        The check is one indexed read (:meth:`ModelRegistry.revision`), so a watcher can poll
        often without taking the GIL from request handling for a full re-read. A refresh
        in which a version failed to load is retried at every call until it succeeds.
        """
        self._prune_retired()
        revision = self.registry.revision()
        if revision == self._revision and not self._incomplete:
            return False
        self.refresh(revision)
        return True

    def _prune_retired(self) -> None:
        now = time.monotonic()
        with self._retired_lock:
            for key in [key for key, deadline in self._retired.items() if now > deadline]:
                del self._retired[key]

    def _read_registry(self, initial: bool) -> dict[str, tuple[dict[str, RouteTargets], set[int]]]:
        """Model -> (its resolved routes, its active versions), for every served model."""
        wanted: dict[str, tuple[dict[str, RouteTargets], set[int]]] = {}
        with self._lock:
            summaries = {s.name: s for s in self.registry.models()}
            names = self._only if self._only is not None else sorted(summaries)
            for name in names:
                summary = summaries.get(name)
                if summary is None or not summary.aliases:
                    if initial:
                        raise NotFoundError(f"model {name!r} is not registered or has no alias")
                    if name in self.router.models():
                        logger.warning("%s has no alias any more: no longer served", name)
                    continue
                routes = self.registry.resolved_routes(name)
                versions = {v.version for v in self.registry.list(name)}
                wanted[name] = (routes, versions)
        return wanted

    def _apply(
        self, name: str, routes: Mapping[str, RouteTargets], versions: set[int], *, load: bool
    ) -> bool:
        """Set the route of every alias of one model, loading the versions it needs first.

        Returns False when a version failed to load (its route kept what it had)."""
        current = self.router.routes(name)
        routed = {v for route in current.values() for v in route.versions}
        needed = {v for weights, shadows in routes.values() for v in (*weights, *shadows)}
        loadable: set[int] = set(routed)
        complete = True
        for version in sorted(needed - routed):
            if not load or self._preload(name, version):
                loadable.add(version)
            else:
                complete = False
        self.router.set_versions(name, versions | needed)
        for alias, (weights, shadows) in routes.items():
            route = Route(alias, weights, shadows)
            old = current.get(alias)
            if old == route or not loadable.issuperset(route.versions):
                continue  # unchanged, or a version failed to load: the old route keeps serving
            if old is not None:
                logger.info(
                    "hot reload: %s alias %r now routes to %s (shadows: %s)",
                    name,
                    alias,
                    _weights_text(route.weights),
                    ", ".join(map(str, route.shadows)) or "none",
                )
            self.router.update(name, route)
        for alias in current.keys() - routes.keys():
            logger.info("hot reload: %s alias %r was removed", name, alias)
            self.router.remove(name, alias)
        return complete

    def _preload(self, name: str, version: int) -> bool:
        """Load a version before a route uses it; False (logged) when it fails."""
        try:
            self.cache.preload([(name, version)])
        except Exception as exc:
            logger.error(
                "hot reload: %s version %d failed to load, keeping the current routes: %s",
                name,
                version,
                exc,
            )
            return False
        return True

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

    def resolve(
        self, model: str, ref: str | None = None, *, sticky_key: str | None = None
    ) -> Decision:
        """The version that answers ``model`` at ``ref`` (an alias, a version or None).

        ``sticky_key`` (a caller identity) keeps one caller on one version of a weighted
        route while its weights are unchanged.

        Raises:
            ProtocolError: 404 naming the unknown model, alias or version.
        """
        try:
            return self.router.choose(model, ref, sticky_key)
        except RoutingError as exc:
            raise ProtocolError(404, str(exc)) from None

    @contextlib.contextmanager
    def use(self, model: str, version: int) -> Iterator[LoadedBundle]:
        """The loaded bundle of one version, pinned for the ``with`` block."""
        try:
            with self.cache.use(model, version) as served:
                yield served.bundle
        finally:
            if self._retired:
                self._reap(model, version)

    def _reap(self, model: str, version: int) -> None:
        """Unload a version retired by a hot reload that a request loaded again.

        A request that resolved the old version just before the swap may pin it only after
        the eviction, loading it afresh; it answers normally and the version is unloaded
        again when it is done (for :data:`RETIRE_GRACE_S` after the retirement).
        """
        key = (model, version)
        with self._retired_lock:
            deadline = self._retired.get(key)
            if deadline is None:
                return
            if time.monotonic() > deadline:
                del self._retired[key]
                return
        if key not in self.deployed():
            self.cache.evict(model, version)

    def manifest(self, model: str, version: int) -> BundleManifest:
        """A version's manifest, read without loading the model (once per version)."""
        key = (model, version)
        manifest = self._manifests.get(key)
        if manifest is None:
            manifest = self._manifests[key] = read_manifest(self._uri(model, version))
        return manifest

    def deployed(self) -> list[tuple[str, int]]:
        """Every ``(model, version)`` a route mentions (weighted or shadow)."""
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

    def all_loaded(self) -> bool:
        """Whether every deployed version (routed or shadow) is loaded: the server's readiness."""
        return self.cache.ready(self.deployed())

    def ready(self, model: str, version: int) -> bool:
        """Whether a version can answer: it is served and its last load did not fail."""
        return version in self.router.versions(model) and (model, version) not in self._failed

"""Traffic routing between model versions: weighted aliases, sticky callers and shadows.

A :class:`Route` is what an alias means to the server: the versions that answer, with
weights (A/B tests, canary percentages), and the *shadow* versions that get a copy of each
request whose answers are logged and never returned. A :class:`Router` holds the routes of
every model and turns a request into a :class:`Decision`::

    router = Router()
    router.update("census", Route("production", {3: 0.9, 4: 0.1}, shadows=[5]))
    router.choose("census", "production", sticky_key=None)   # Decision(version=3, ...)
    router.choose("census", "production", sticky_key="user-42")  # always the same version
    router.choose("census", "4", sticky_key=None)            # explicit: bypasses weights

Choosing:

- without a sticky key, a weighted random draw from the router's ``random.Random`` (inject a
  seeded one in tests);
- with a sticky key, ``sha1(model + "\\0" + key)`` mapped into ``[0, 1)`` and looked up in
  the cumulative weights (versions in ascending order), so one caller stays on one version
  for as long as the weights do not change, and different callers spread like the weights.
  Changing the weights moves as few callers as the cumulative layout allows (growing a canary
  from 10 % to 20 % moves only callers into the canary);
- an explicit version (``"3"``, ``"v3"``) bypasses the weights and has no shadows; its route
  name is ``"v3"`` (aliases may not look like versions, so the names never clash);
  ``"latest"`` means the newest version the router knows of (see :meth:`Router.set_versions`).

Updates apply live and atomically: the router's state is an immutable snapshot that
:meth:`Router.update` replaces wholesale (copy-on-write under a writer lock), so
:meth:`Router.choose` reads it without any lock and never sees half an update.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from conveyor.exceptions import ConveyorError, did_you_mean

__all__ = ["DEFAULT_ALIAS", "Decision", "Route", "Router", "RoutingError", "sticky_point"]

DEFAULT_ALIAS = "production"
"""The alias used when a request names neither an alias nor a version."""

_VERSION_RE = re.compile(r"^[vV]?(\d+)$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


class RoutingError(ConveyorError):
    """A request names a model, alias or version the router does not know."""


@dataclass(frozen=True)
class Route:
    """What an alias of one model routes to.

    Args:
        alias: The alias name (``production``, ``canary``, ...). It starts with a letter and
            may not look like a version (``3``, ``v3``).
        weights: Version -> weight. Weights are relative (``{3: 9, 4: 1}`` is a 90/10
            split), finite, not negative, and sum to more than zero; a version with weight
            zero is kept in the route but never chosen.
        shadows: Versions that receive a copy of every request routed here; their answers
            are logged and never returned.

    Raises:
        ValueError: The alias or the weights are invalid.
    """

    alias: str
    weights: Mapping[int, float]
    shadows: tuple[int, ...] | list[int] = field(default_factory=tuple)
    _versions: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.alias, str) or not _ALIAS_RE.match(self.alias):
            raise ValueError(
                f"invalid alias {self.alias!r}: it must start with a letter and contain only "
                "letters, digits, '_', '-' and '.'"
            )
        if _VERSION_RE.match(self.alias) or self.alias.lower() == "latest":
            raise ValueError(f"invalid alias {self.alias!r}: it looks like a version")
        weights: dict[int, float] = {}
        for version, weight in dict(self.weights).items():
            _check_version(version, f"route {self.alias!r}")
            w = float(weight)
            if not math.isfinite(w) or w < 0:
                raise ValueError(
                    f"route {self.alias!r}: weight of version {version} must be a finite "
                    f"number >= 0, got {weight!r}"
                )
            weights[version] = w
        if not weights or sum(weights.values()) <= 0:
            raise ValueError(f"route {self.alias!r}: weights must sum to more than zero")
        shadows: list[int] = []
        for version in self.shadows:
            _check_version(version, f"route {self.alias!r} shadows")
            if version not in shadows:
                shadows.append(version)
        versions = tuple(sorted(v for v, w in weights.items() if w > 0))
        cumulative: list[float] = []
        total = 0.0
        for version in versions:
            total += weights[version]
            cumulative.append(total)
        object.__setattr__(self, "weights", MappingProxyType(weights))
        object.__setattr__(self, "shadows", tuple(shadows))
        object.__setattr__(self, "_versions", versions)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def __hash__(self) -> int:
        return hash((self.alias, tuple(sorted(self.weights.items())), tuple(self.shadows)))

    @property
    def versions(self) -> tuple[int, ...]:
        """Every version this route mentions (weighted or shadow), ascending."""
        return tuple(sorted(set(self.weights) | set(self.shadows)))

    def pick(self, u: float) -> int:
        """The version whose cumulative-weight interval holds ``u`` (``0 <= u < 1``).

        Args:
            u: A number in ``[0, 1)``: random for a weighted draw, a hash for a sticky key.

        Returns:
            The chosen version (never one with weight zero).
        """
        cumulative = self._cumulative
        index = bisect.bisect_right(cumulative, u * cumulative[-1])
        return self._versions[min(index, len(self._versions) - 1)]


@dataclass(frozen=True, slots=True)
class Decision:
    """Which version answers a request, under which route, and who gets a shadow copy.

    Attributes:
        version: The version whose answer is returned.
        route_name: The alias that routed the request, or ``"v<N>"`` for an explicit version.
        shadows: Versions that get a copy of the request (never including ``version``).
    """

    version: int
    route_name: str
    shadows: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _ModelState:
    routes: Mapping[str, Route]
    versions: frozenset[int]


def _check_version(version: object, where: str) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{where}: versions are integers >= 1, got {version!r}")


def sticky_point(model: str, key: str) -> float:
    """Map a sticky key to a fixed point in ``[0, 1)`` (sha1 of model and key).

    Args:
        model: The model name (so one caller's position differs between models).
        key: The caller's sticky key.

    Returns:
        The first 64 bits of the digest divided by 2**64.
    """
    digest = hashlib.sha1(f"{model}\0{key}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Router:
    """Routes of every model, read lock-free and replaced atomically.

    Args:
        routes: Initial routes, model -> routes.
        rng: The random generator for weighted draws (inject a seeded one in tests).
        default_alias: The alias used when a request names neither alias nor version; a
            model with a single route uses that route when it has no ``default_alias``.
    """

    def __init__(
        self,
        routes: Mapping[str, Iterable[Route]] | None = None,
        *,
        rng: random.Random | None = None,
        default_alias: str = DEFAULT_ALIAS,
    ) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._default_alias = default_alias
        self._write_lock = threading.Lock()
        self._state: Mapping[str, _ModelState] = MappingProxyType({})
        for model, model_routes in (routes or {}).items():
            for route in model_routes:
                self.update(model, route)

    # -- reading (lock-free) --------------------------------------------------------------

    def choose(
        self, model: str, alias_or_version: str | None = None, sticky_key: str | None = None
    ) -> Decision:
        """Decide which version answers a request.

        Args:
            model: The model name.
            alias_or_version: An alias, an explicit version (``"3"``, ``"v3"``),
                ``"latest"``, or None for the default alias.
            sticky_key: A caller identity; the same key gets the same version while the
                route's weights are unchanged. Ignored for explicit versions.

        Returns:
            The decision: version, route name and shadow versions.

        Raises:
            RoutingError: The model, alias or version is unknown; the message names the
                valid ones.
        """
        state = self._state  # one read of the snapshot: never half an update
        model_state = state.get(model)
        if model_state is None:
            raise RoutingError(f"unknown model {model!r}{did_you_mean(model, state)}")
        if alias_or_version is not None:
            match = _VERSION_RE.match(alias_or_version)
            if match:
                return self._explicit(model, model_state, int(match.group(1)))
            if alias_or_version.lower() == "latest":
                known = self._known_versions(model_state)
                if not known:
                    raise RoutingError(f"model {model!r} has no versions")
                return Decision(max(known), "latest")
        route = self._route(model, model_state, alias_or_version)
        u = sticky_point(model, sticky_key) if sticky_key is not None else self._rng.random()
        version = route.pick(u)
        return Decision(version, route.alias, tuple(s for s in route.shadows if s != version))

    def route(self, model: str, alias: str) -> Route:
        """The route of one alias.

        Raises:
            RoutingError: Unknown model or alias.
        """
        state = self._state
        model_state = state.get(model)
        if model_state is None:
            raise RoutingError(f"unknown model {model!r}{did_you_mean(model, state)}")
        return self._route(model, model_state, alias)

    def routes(self, model: str) -> dict[str, Route]:
        """Alias -> route of one model (empty for an unknown model)."""
        model_state = self._state.get(model)
        return dict(model_state.routes) if model_state is not None else {}

    def models(self) -> list[str]:
        """The names of every model the router knows, sorted."""
        return sorted(self._state)

    def versions(self, model: str) -> list[int]:
        """Every version of a model the router knows of: routed, shadowed or declared."""
        model_state = self._state.get(model)
        if model_state is None:
            return []
        return sorted(self._known_versions(model_state))

    # -- writing (copy-on-write) ----------------------------------------------------------

    def update(self, model: str, route: Route) -> None:
        """Add or replace one alias's route; applies to the next :meth:`choose` call.

        Args:
            model: The model name.
            route: The new route (replaces any route with the same alias).
        """
        with self._write_lock:
            old = self._state.get(model)
            routes = dict(old.routes) if old is not None else {}
            routes[route.alias] = route
            versions = old.versions if old is not None else frozenset()
            self._swap(model, _ModelState(MappingProxyType(routes), versions))

    def remove(self, model: str, alias: str | None = None) -> None:
        """Remove one alias's route, or the whole model when ``alias`` is None.

        Raises:
            RoutingError: Unknown model or alias.
        """
        with self._write_lock:
            old = self._state.get(model)
            if old is None:
                raise RoutingError(f"unknown model {model!r}{did_you_mean(model, self._state)}")
            if alias is None:
                new_state = dict(self._state)
                del new_state[model]
                self._state = MappingProxyType(new_state)
                return
            if alias not in old.routes:
                raise RoutingError(
                    f"model {model!r} has no alias {alias!r}{did_you_mean(alias, old.routes)}"
                )
            routes = {a: r for a, r in old.routes.items() if a != alias}
            self._swap(model, _ModelState(MappingProxyType(routes), old.versions))

    def set_versions(self, model: str, versions: Iterable[int]) -> None:
        """Declare the versions of a model that can be requested explicitly.

        Without a declaration any explicit version is accepted (the server decides whether
        it exists); with one, an undeclared version that no route mentions is a
        :class:`RoutingError`.
        """
        declared = frozenset(versions)
        for version in declared:
            _check_version(version, f"model {model!r}")
        with self._write_lock:
            old = self._state.get(model)
            routes = old.routes if old is not None else MappingProxyType({})
            self._swap(model, _ModelState(routes, declared))

    # -- helpers --------------------------------------------------------------------------

    def _swap(self, model: str, model_state: _ModelState) -> None:
        new_state = dict(self._state)
        new_state[model] = model_state
        self._state = MappingProxyType(new_state)  # one reference assignment: atomic

    @staticmethod
    def _known_versions(model_state: _ModelState) -> set[int]:
        known = set(model_state.versions)
        for route in model_state.routes.values():
            known.update(route.versions)
        return known

    def _explicit(self, model: str, model_state: _ModelState, version: int) -> Decision:
        if model_state.versions:
            known = self._known_versions(model_state)
            if version not in known:
                valid = ", ".join(str(v) for v in sorted(known))
                raise RoutingError(f"model {model!r} has no version {version} (valid: {valid})")
        if version < 1:
            raise RoutingError(f"model {model!r} has no version {version} (versions start at 1)")
        return Decision(version, f"v{version}")

    def _route(self, model: str, model_state: _ModelState, alias: str | None) -> Route:
        routes = model_state.routes
        if alias is None:
            route = routes.get(self._default_alias)
            if route is not None:
                return route
            if len(routes) == 1:
                return next(iter(routes.values()))
            raise RoutingError(
                f"model {model!r} has no {self._default_alias!r} alias; name one"
                f"{did_you_mean(self._default_alias, routes)}"
            )
        route = routes.get(alias)
        if route is None:
            raise RoutingError(
                f"model {model!r} has no alias {alias!r}{did_you_mean(alias, routes)}"
            )
        return route

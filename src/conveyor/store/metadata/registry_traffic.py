"""Traffic splits of the registry: the rules a split obeys and how its targets become versions.

A split shares the requests for one alias of a model (its *route*, e.g. ``production``)
between *targets*: other aliases of the same model (``canary``) or explicit versions
(``v7``), each with a percent; *shadow* targets get copies whose answers are logged, never
returned. The registry store stores targets, not versions, and resolves them when read, so
``production=90 canary=10`` keeps sending 10 % to whatever ``canary`` points at.

The rules are pure: :func:`check_split` and :func:`check_targets` run before the store
writes anything, :func:`resolve_model_routes` turns a consistent read of aliases, versions
and splits into the routes a server applies. :class:`TrafficSplits` is the traffic half of
:class:`~conveyor.store.metadata.registry_store.RegistryStore` (a mixin): each method is one
transaction, serialized per model like every registry write, and audited as ``traffic``
with the old and new split in the entry's ``details``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, delete, insert, select

from conveyor.exceptions import NotFoundError
from conveyor.store.metadata.database import Database
from conveyor.store.metadata.registry_records import (
    AuditAction,
    AuditRecord,
    RegistryStoreError,
    TrafficSplit,
    VersionStatus,
    check_alias,
    check_text,
    traffic_split,
    version_number,
    version_ranges,
)
from conveyor.store.metadata.tables import model_traffic, model_versions

__all__ = [
    "PERCENT_TOLERANCE",
    "ResolvedRoutes",
    "RouteTargets",
    "TrafficSplits",
    "check_not_a_target",
    "check_split",
    "check_targets",
    "resolve_model_routes",
    "split_details",
    "traffic_target",
    "write_split",
]

PERCENT_TOLERANCE = 1e-6
"""How far from 100 the percents of a split may sum (floating-point slack, not a margin)."""

RouteTargets = tuple[dict[int, float], tuple[int, ...]]
"""A resolved route: ``({version: weight}, shadow versions)``; weights sum to 1."""


@dataclass(frozen=True)
class ResolvedRoutes:
    """Every alias of a model resolved to versions, and the targets that were skipped.

    Attributes:
        routes: Alias -> ``({version: weight}, shadow versions)``; the weights sum to 1.
        skipped: One message per target that no longer exists (each names the model, the
            route and the target).
    """

    routes: dict[str, RouteTargets]
    skipped: tuple[str, ...] = ()


def _number(value: float) -> str:
    return f"{value:.10g}"


def _split_text(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{target}={_number(percent)}" for target, percent in weights.items())


def split_details(split: TrafficSplit | None) -> dict[str, Any] | None:
    """A split as audit details: ``{"weights": {...}, "shadows": [...]}`` (None for none)."""
    if split is None:
        return None
    return {"weights": dict(split.weights), "shadows": list(split.shadows)}


def traffic_target(target: str) -> str:
    """A target in its stored form: ``"7"`` and ``"v7"`` -> ``"v7"``, an alias as is.

    Raises:
        RegistryStoreError: neither an alias name nor a version number.
    """
    if isinstance(target, str):
        text = target.strip()
        number = version_number(text)
        if number is not None and number >= 1:
            return f"v{number}"
        if number is None:
            with contextlib.suppress(RegistryStoreError):
                return check_alias(text)
    raise RegistryStoreError(
        f"invalid traffic target {target!r}: give an alias of the model (canary) or a version (v7)"
    )


def _percent(where: str, target: str, percent: Any) -> float:
    if isinstance(percent, bool) or not isinstance(percent, numbers.Real):
        raise RegistryStoreError(
            f"{where}: the percent of {target!r} must be a number, got {percent!r}"
        )
    value = float(percent)
    if not math.isfinite(value) or value < 0:
        raise RegistryStoreError(
            f"{where}: the percent of {target!r} must be a finite number >= 0, got {percent!r}"
        )
    return value


def check_split(
    name: str, route: str, weights: Mapping[str, Any], shadows: Sequence[str]
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Validate a split's values; return its weights (by target) and shadows, normalised.

    Targets are normalised (``"7"`` -> ``"v7"``); the percents must be finite, >= 0 and
    sum to 100; a shadow may not also be a weighted target; repeated shadows count once.
    Whether the targets exist is :func:`check_targets`' job.

    Raises:
        RegistryStoreError: the message names the target at fault, or the sum.
    """
    where = f"model {name!r} route {route!r}"
    if not isinstance(weights, Mapping) or not weights:
        raise RegistryStoreError(
            f"{where}: give at least one target with its percent, e.g. "
            "{'production': 90, 'canary': 10}"
        )
    checked: dict[str, float] = {}
    given: dict[str, str] = {}
    for target, percent in weights.items():
        key = traffic_target(target)
        if key in checked:
            raise RegistryStoreError(
                f"{where}: target {key!r} is given twice ({given[key]!r} and {target!r})"
            )
        checked[key], given[key] = _percent(where, key, percent), target
    checked = dict(sorted(checked.items()))
    total = math.fsum(checked.values())
    if abs(total - 100.0) > PERCENT_TOLERANCE:
        raise RegistryStoreError(
            f"{where}: the percents must sum to 100, they sum to {_number(total)} "
            f"({_split_text(checked)})"
        )
    if isinstance(shadows, str):
        raise RegistryStoreError(f"{where}: shadows must be a list of targets, not {shadows!r}")
    chosen: list[str] = []
    for shadow in shadows:
        key = traffic_target(shadow)
        if key in checked:
            raise RegistryStoreError(
                f"{where}: {key!r} is both a weighted target and a shadow; a shadow only gets "
                "copies of the requests, so list it in one place"
            )
        if key not in chosen:
            chosen.append(key)
    return checked, tuple(chosen)


def check_targets(
    name: str,
    route: str,
    targets: Iterable[str],
    aliases: Mapping[str, int],
    statuses: Mapping[int, str],
) -> None:
    """Every (normalised) target is an alias of the model or one of its active versions.

    Args:
        name: The model.
        route: The route whose split is checked (for the message).
        targets: Weighted and shadow targets, as :func:`check_split` returned them.
        aliases: The model's aliases -> versions.
        statuses: The model's versions -> status (``"active"``, ``"archived"``).

    Raises:
        NotFoundError: no such alias or version (the message lists those there are).
        RegistryStoreError: the version is archived.
    """
    for target in targets:
        number = version_number(target)
        where = f"model {name!r} route {route!r}: traffic target {target!r}"
        if number is None and target not in aliases:
            listed = ", ".join(sorted(aliases)) or "none"
            raise NotFoundError(f"{where} is not an alias of the model (aliases: {listed})")
        if number is not None and number not in statuses:
            listed = version_ranges(list(statuses))
            raise NotFoundError(f"{where}: no version {number} (versions: {listed})")
        if number is not None and statuses[number] == VersionStatus.ARCHIVED.value:
            raise RegistryStoreError(
                f"{where}: version {number} is archived; unarchive it or choose another version"
            )


def _resolve(target: str, aliases: Mapping[str, int], active: set[int]) -> int | None:
    number = version_number(target)
    if number is None:
        return aliases.get(target)
    return number if number in active else None


def _resolve_split(
    name: str, split: TrafficSplit, own: int, aliases: Mapping[str, int], active: set[int]
) -> tuple[RouteTargets, list[str]]:
    skipped: list[str] = []
    where = f"model {name!r} route {split.route!r}"
    weights: dict[int, float] = {}
    for target, percent in split.weights.items():
        version = _resolve(target, aliases, active)
        if version is None:
            skipped.append(f"{where}: traffic target {target!r} no longer exists; skipped")
            continue
        weights[version] = weights.get(version, 0.0) + percent
    total = math.fsum(weights.values())
    if total > 0:
        weights = {version: percent / total for version, percent in sorted(weights.items())}
    else:
        skipped.append(f"{where}: no weighted target is left; all requests go to version {own}")
        weights = {own: 1.0}
    shadows: list[int] = []
    for target in split.shadows:
        version = _resolve(target, aliases, active)
        if version is None:
            skipped.append(f"{where}: shadow target {target!r} no longer exists; skipped")
        elif version not in shadows:
            shadows.append(version)
    return (weights, tuple(shadows)), skipped


def resolve_model_routes(
    name: str,
    aliases: Mapping[str, int],
    splits: Mapping[str, TrafficSplit],
    active: Iterable[int],
) -> ResolvedRoutes:
    """Resolve every alias of a model to the versions that answer it.

    An alias without a split routes to its own version (weight 1). A split's targets are
    resolved now: two targets on one version add up, a target that no longer exists (a
    removed alias, an archived version) is skipped and its share goes to the others; with no
    weighted target left the alias routes to its own version.

    Args:
        name: The model.
        aliases: Its aliases -> versions.
        splits: Its splits by route (splits of routes that are not aliases are ignored).
        active: Its active versions.
    """
    usable = set(active)
    routes: dict[str, RouteTargets] = {}
    skipped: list[str] = []
    for alias, version in sorted(aliases.items()):
        split = splits.get(alias)
        if split is None:
            routes[alias] = ({version: 1.0}, ())
            continue
        routes[alias], missing = _resolve_split(name, split, version, aliases, usable)
        skipped.extend(missing)
    return ResolvedRoutes(routes, tuple(skipped))


# -- in a transaction ----------------------------------------------------------------------
class _Registry(Protocol):
    """What :class:`TrafficSplits` uses of the registry store it is mixed into."""

    _db: Database

    def _lock(self, conn: Connection, name: str) -> None: ...

    def _require_model(self, conn: Connection, name: str) -> None: ...

    def _aliases(self, conn: Connection, name: str) -> dict[str, int]: ...

    def _audit(
        self,
        conn: Connection,
        name: str,
        action: AuditAction,
        *,
        alias: str | None = None,
        from_version: int | None = None,
        to_version: int | None = None,
        actor: str,
        reason: str,
        at: datetime,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord: ...


def read_splits(conn: Connection, name: str) -> dict[str, TrafficSplit]:
    """Route -> split of ``name``, by route."""
    query = select(model_traffic).where(model_traffic.c.name == name)
    rows = conn.execute(query.order_by(model_traffic.c.route)).mappings()
    return {row["route"]: traffic_split(row) for row in rows}


def _statuses(conn: Connection, name: str) -> dict[int, str]:
    query = select(model_versions.c.version, model_versions.c.status)
    return {
        row.version: row.status for row in conn.execute(query.where(model_versions.c.name == name))
    }


def write_split(
    registry: _Registry,
    conn: Connection,
    name: str,
    route: str,
    new: TrafficSplit | None,
    *,
    actor: str,
    reason: str,
    at: datetime,
) -> AuditRecord | None:
    """Replace the split of ``route`` by ``new`` (None removes it) and audit the change.

    Returns None, writing nothing, when the split is already ``new`` (shadows in any order).
    """
    old = read_splits(conn, name).get(route)
    if _same(old, new):
        return None
    where = (model_traffic.c.name == name) & (model_traffic.c.route == route)
    conn.execute(delete(model_traffic).where(where))
    if new is not None:
        conn.execute(
            insert(model_traffic).values(
                name=name,
                route=route,
                weights=new.weights,
                shadows=list(new.shadows),
                updated_at=new.updated_at,
                updated_by=new.updated_by,
            )
        )
    details = {"old": split_details(old), "new": split_details(new)}
    return registry._audit(
        conn,
        name,
        AuditAction.TRAFFIC,
        alias=route,
        actor=actor,
        reason=reason,
        at=at,
        details=details,
    )


def _same(old: TrafficSplit | None, new: TrafficSplit | None) -> bool:
    if old is None or new is None:
        return old is new
    return old.weights == new.weights and set(old.shadows) == set(new.shadows)


def check_not_a_target(conn: Connection, name: str, version: int) -> None:
    """Refuse to archive a version that a split names explicitly (``v<N>``).

    Raises:
        RegistryStoreError: naming the routes whose splits name it.
    """
    target = f"v{version}"
    routes = [
        route
        for route, split in read_splits(conn, name).items()
        if target in split.weights or target in split.shadows
    ]
    if routes:
        raise RegistryStoreError(
            f"model {name!r} version {version} is a traffic target of route "
            f"{', '.join(map(repr, routes))}; change or clear that split before archiving it"
        )


class TrafficSplits:
    """The traffic-split methods of :class:`~conveyor.store.metadata.registry_store.RegistryStore`.

    Example:
        >>> reg = store.registry  # doctest: +SKIP
        >>> reg.set_traffic("census", "production", {"production": 90, "canary": 10}, actor="ci")
        >>> reg.resolve_routes("census").routes["production"]
        ({3: 0.9, 4: 0.1}, ())
    """

    def set_traffic(
        self: _Registry,
        name: str,
        route: str,
        weights: Mapping[str, Any],
        shadows: Sequence[str] = (),
        *,
        actor: str,
        reason: str = "",
    ) -> AuditRecord | None:
        """Share the requests for alias ``route`` between targets, audited as ``traffic``.

        ``weights`` maps targets (aliases of ``name``, or versions as ``"7"`` / ``"v7"``) to
        percents summing to 100; ``shadows`` get copies. Returns the audit entry, or None
        when the route already had exactly this split (shadows in any order).

        Raises:
            RegistryStoreError: invalid route, target or percent, percents not summing to
                100, a shadow that is also weighted, an archived version as target.
            NotFoundError: no such model, route alias or target.
        """
        check_alias(route)
        split, chosen = check_split(name, route, weights, shadows)
        who = check_text(actor, "actor", required=True, limit=255)
        why = check_text(reason, "reason", required=False)

        def tx(conn: Connection) -> AuditRecord | None:
            self._lock(conn, name)
            aliases = self._aliases(conn, name)
            if route not in aliases:
                self._require_model(conn, name)
                raise NotFoundError(
                    f"model {name!r} has no alias {route!r} to split (aliases: "
                    f"{', '.join(sorted(aliases)) or 'none'}); promote a version to it first"
                )
            check_targets(name, route, [*split, *chosen], aliases, _statuses(conn, name))
            now = datetime.now(UTC)
            new = TrafficSplit(name, route, split, chosen, now, who)
            return write_split(self, conn, name, route, new, actor=who, reason=why, at=now)

        return self._db.write(tx)

    def clear_traffic(
        self: _Registry, name: str, route: str, *, actor: str, reason: str = ""
    ) -> AuditRecord | None:
        """Remove the split of ``route`` (audited); None when it had none.

        Raises:
            RegistryStoreError: invalid route or actor.
            NotFoundError: no such model.
        """
        check_alias(route)
        who = check_text(actor, "actor", required=True, limit=255)
        why = check_text(reason, "reason", required=False)

        def tx(conn: Connection) -> AuditRecord | None:
            self._lock(conn, name)
            self._require_model(conn, name)
            now = datetime.now(UTC)
            return write_split(self, conn, name, route, None, actor=who, reason=why, at=now)

        return self._db.write(tx)

    def traffic(self: _Registry, name: str) -> dict[str, TrafficSplit]:
        """Route -> split of ``name``, by route (NotFoundError for an unknown name)."""

        def tx(conn: Connection) -> dict[str, TrafficSplit]:
            self._require_model(conn, name)
            return read_splits(conn, name)

        return self._db.read(tx)

    def resolve_routes(self: _Registry, name: str) -> ResolvedRoutes:
        """Every alias of ``name`` with the versions that answer it, read in one snapshot.

        See :func:`resolve_model_routes`; NotFoundError for an unknown name.
        """

        def tx(conn: Connection) -> ResolvedRoutes:
            self._require_model(conn, name)
            statuses = _statuses(conn, name)
            active = [v for v, s in statuses.items() if s == VersionStatus.ACTIVE.value]
            return resolve_model_routes(
                name, self._aliases(conn, name), read_splits(conn, name), active
            )

        return self._db.read(tx)

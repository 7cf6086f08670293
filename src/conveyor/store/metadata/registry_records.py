"""Records of the registry tables (versions, aliases, traffic splits, audit entries) and rules.

The records are like :mod:`~conveyor.store.metadata.records`: plain values only (timezone-aware
UTC timestamps), so they outlive the connection and are safe to pass between threads. The
rules (valid names and aliases, required reasons, JSON metadata, how an alias's past holders
are replayed from the audit trail) are pure functions the registry store checks before it
writes anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from conveyor.exceptions import StoreError

__all__ = [
    "ALIAS_MOVES",
    "LATEST",
    "AuditAction",
    "AuditRecord",
    "ModelSummary",
    "ModelVersionRecord",
    "RegistryStoreError",
    "TrafficSplit",
    "VersionStatus",
    "audit_record",
    "check_alias",
    "check_json",
    "check_name",
    "check_text",
    "check_version",
    "replay_holders",
    "traffic_split",
    "version_number",
    "version_ranges",
    "version_record",
]


class VersionStatus(StrEnum):
    """Life cycle of a version: archived ones are kept but hidden and hold no alias."""

    ACTIVE = "active"
    ARCHIVED = "archived"


class AuditAction(StrEnum):
    """What an audit entry records."""

    REGISTER = "register"
    SET_ALIAS = "set_alias"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    REMOVE_ALIAS = "remove_alias"
    ARCHIVE = "archive"
    UNARCHIVE = "unarchive"
    TRAFFIC = "traffic"


ALIAS_MOVES = (AuditAction.SET_ALIAS, AuditAction.PROMOTE, AuditAction.ROLLBACK)
"""The only actions that point an alias at a version."""


@dataclass(frozen=True)
class ModelVersionRecord:
    """One version of a named artifact, with the aliases it holds (sorted)."""

    id: int
    name: str
    version: int
    artifact_id: int
    artifact_uri: str
    artifact_sha256: str
    run_id: int | None
    execution_id: int | None
    metrics: dict[str, Any]
    blessing: dict[str, Any] | None
    params: dict[str, Any]
    tags: dict[str, Any]
    description: str
    status: VersionStatus
    created_at: datetime
    created_by: str
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``name:version``, the way commands name a version."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class AuditRecord:
    """One change of the registry: who did what, when and why.

    ``details`` holds what the other fields cannot say: for a ``traffic`` entry (whose
    ``alias`` is the route) ``{"old": split, "new": split}``, each ``{"weights": {target:
    percent}, "shadows": [target]}`` or None when there was (or is) no split.
    """

    id: int
    name: str
    action: AuditAction
    alias: str | None
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: datetime
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrafficSplit:
    """How the requests for one alias (the *route*) of a model are shared.

    ``weights`` maps each target -- another alias of the model or an explicit version
    (``"v7"``) -- to a percent; the percents sum to 100. ``shadows`` are targets that get a
    copy of each request, answered but never returned. Targets are resolved to versions when
    read (:meth:`RegistryStore.resolve_routes
    <conveyor.store.metadata.registry_store.RegistryStore.resolve_routes>`), so a split
    follows its target aliases as they move.

    Example:
        >>> split = TrafficSplit("census", "production", {"canary": 10.0, "production": 90.0},
        ...                      (), updated_at, "alice")  # doctest: +SKIP
    """

    model: str
    route: str
    weights: dict[str, float]
    shadows: tuple[str, ...]
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class ModelSummary:
    """A registered name: its newest active version, how many are active, its aliases."""

    name: str
    latest_version: int | None
    active_versions: int
    aliases: dict[str, int]


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if value else {}


def version_record(row: Mapping[Any, Any], aliases: tuple[str, ...] = ()) -> ModelVersionRecord:
    """Build a record from a ``model_versions`` row joined with ``artifact_uri/_sha256``."""
    blessing = row["blessing"]
    return ModelVersionRecord(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        artifact_id=row["artifact_id"],
        artifact_uri=row["artifact_uri"],
        artifact_sha256=row["artifact_sha256"],
        run_id=row["run_id"],
        execution_id=row["execution_id"],
        metrics=_dict(row["metrics"]),
        blessing=None if blessing is None else dict(blessing),
        params=_dict(row["params"]),
        tags=_dict(row["tags"]),
        description=row["description"],
        status=VersionStatus(row["status"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        aliases=aliases,
    )


def audit_record(row: Mapping[Any, Any]) -> AuditRecord:
    """Build a record from a ``model_audit`` row."""
    return AuditRecord(
        id=row["id"],
        name=row["name"],
        action=AuditAction(row["action"]),
        alias=row["alias"],
        from_version=row["from_version"],
        to_version=row["to_version"],
        actor=row["actor"],
        reason=row["reason"],
        at=row["at"],
        details=None if row["details"] is None else dict(row["details"]),
    )


def traffic_split(row: Mapping[Any, Any]) -> TrafficSplit:
    """Build a record from a ``model_traffic`` row (weights ordered by target)."""
    weights = {str(k): float(v) for k, v in sorted(dict(row["weights"]).items())}
    return TrafficSplit(
        model=row["name"],
        route=row["route"],
        weights=weights,
        shadows=tuple(str(s) for s in row["shadows"]),
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


# -- rules ------------------------------------------------------------------------------
LATEST = "latest"
"""The reference that always means the newest active version; not usable as an alias name."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_NUMBER = re.compile(r"v?(\d+)")


class RegistryStoreError(StoreError):
    """A registry change was refused: invalid name, archived version, alias conflict."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid registry name, else raise RegistryStoreError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryStoreError(
            f"invalid model name {name!r}: use letters, digits, '_', '.' and '-', starting "
            "with a letter or digit, at most 255 characters"
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias name, else raise RegistryStoreError."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise RegistryStoreError(
            f"invalid alias {alias!r}: use letters, digits, '_', '.' and '-', starting with "
            "a letter, at most 64 characters"
        )
    if alias == LATEST or _NUMBER.fullmatch(alias):
        raise RegistryStoreError(
            f"invalid alias {alias!r}: it would read as a version reference; choose another"
        )
    return alias


def check_text(value: str, what: str, *, required: bool, limit: int | None = None) -> str:
    """``value`` stripped; RegistryStoreError when it is not text, blank but required, too long."""
    if not isinstance(value, str):
        raise RegistryStoreError(f"{what} must be text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        hint = ": say why, for the audit trail" if what == "reason" else ""
        raise RegistryStoreError(f"a non-empty {what} is required{hint}")
    if limit is not None and len(value) > limit:
        raise RegistryStoreError(f"{what} is longer than {limit} characters")
    return value


def check_json(value: Any, what: str, name: str) -> Any:
    """A plain-JSON copy of ``value``; RegistryStoreError when it is not JSON (NaN included)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RegistryStoreError(f"model {name!r}: {what} must be JSON data: {exc}") from exc


def version_ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    groups: list[list[int]] = []
    for number in sorted(numbers):
        if groups and number == groups[-1][-1] + 1:
            groups[-1].append(number)
        else:
            groups.append([number])
    shown = (str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups)
    return ", ".join(shown) or "none"


def replay_holders(entries: list[AuditRecord]) -> list[int]:
    """The stack of an alias's holders from its audit entries (oldest first).

    A move pushes the new holder, a rollback pops back to its target (so rolling back twice
    walks further back instead of toggling), removing the alias starts afresh.
    """
    stack: list[int] = []
    for entry in entries:
        target = entry.to_version
        if entry.action == AuditAction.REMOVE_ALIAS:
            stack.clear()
        elif entry.action == AuditAction.ROLLBACK and target is not None:
            while stack and stack[-1] != target:
                stack.pop()
            if not stack:
                stack.append(target)
        elif entry.action in ALIAS_MOVES and target is not None and stack[-1:] != [target]:
            stack.append(target)
    return stack


def check_version(version: int) -> int:
    """Return ``version`` if it is a version number (an int >= 1), else RegistryStoreError."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RegistryStoreError(f"invalid version {version!r}: versions are numbers from 1")
    return version


def version_number(ref: str) -> int | None:
    """``"3"`` or ``"v3"`` -> 3; None when ``ref`` does not name a version by number."""
    match = _NUMBER.fullmatch(ref.strip())
    return None if match is None else int(match.group(1))

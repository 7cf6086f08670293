"""The registry tables: named, numbered versions of an artifact, aliases and an audit trail.

This is the engine half of the model registry and knows nothing about models: a *version*
is an artifact registered under a name with a number (1, 2, ... per name) and JSON metadata;
an *alias* (``production``, ``staging``) points at one version of a name; a *traffic split*
shares the requests for one alias between other aliases and versions (see
:mod:`~conveyor.store.metadata.registry_traffic`); every change is an append-only audit row
with time, actor and reason. The ML layer (:mod:`conveyor.registry`)
adds blessings, promotion and rollback on top.

Each public method is one transaction on the :class:`~conveyor.store.metadata.database.Database`
the metadata store uses. Writes about one name are serialized: SQLite takes its write lock at
``BEGIN IMMEDIATE``; PostgreSQL takes a transaction advisory lock on the name, so concurrent
registrations get distinct, gap-free version numbers (the unique key (name, version) is the
last line of defence). Bad input raises before anything is written, so a refused change leaves
versions, aliases and audit trail exactly as they were.

Example:
    >>> from conveyor.store.metadata import MetadataStore
    >>> store = MetadataStore.open("sqlite:///:memory:")
    >>> store.registry.list_models()
    []
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, case, delete, func, insert, select, text, update

from conveyor.exceptions import NotFoundError, did_you_mean
from conveyor.store.metadata.database import Database
from conveyor.store.metadata.registry_records import (
    ALIAS_MOVES,
    LATEST,
    AuditAction,
    AuditRecord,
    ModelSummary,
    ModelVersionRecord,
    RegistryStoreError,
    VersionStatus,
    audit_record,
    check_alias,
    check_json,
    check_name,
    check_text,
    check_version,
    replay_holders,
    version_number,
    version_ranges,
    version_record,
)
from conveyor.store.metadata.registry_traffic import (
    TrafficSplits,
    check_not_a_target,
    write_split,
)
from conveyor.store.metadata.tables import artifacts, model_aliases, model_audit, model_versions

__all__ = ["RegistryStore"]

# Key space of the registry's advisory locks (the two-int form never meets the migrations'
# single bigint key); the second int is hashtext(name).
_PG_LOCK_CLASS = 0x6D6F646C  # "modl"
_VERSIONS = select(
    model_versions,
    artifacts.c.uri.label("artifact_uri"),
    artifacts.c.sha256.label("artifact_sha256"),
).join_from(model_versions, artifacts)


def _now() -> datetime:
    return datetime.now(UTC)


class RegistryStore(TrafficSplits):
    """Named versions of artifacts with aliases and traffic splits, over the metadata store.

    The traffic splits' methods (``set_traffic``, ``clear_traffic``, ``traffic``,
    ``resolve_routes``) come from :class:`~conveyor.store.metadata.registry_traffic.TrafficSplits`.

    Get it from :attr:`MetadataStore.registry <conveyor.store.metadata.MetadataStore.registry>`.
    Thread-safe like the store; several processes may write at once.

    Example:
        >>> reg = store.registry  # doctest: +SKIP
        >>> v = reg.create_version("census", artifact_id, actor="ci", metrics={"auc": 0.91})
        >>> reg.set_alias("census", "production", v.version, actor="ci", reason="first model")
        >>> reg.resolve("census", "production").version
        1
    """

    def __init__(self, database: Database) -> None:
        """Bind to an open :class:`Database` (the one the metadata store uses)."""
        self._db = database

    # -- versions -------------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        artifact_id: int,
        *,
        run_id: int | None = None,
        execution_id: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        blessing: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
        actor: str,
        reason: str = "",
    ) -> ModelVersionRecord:
        """Register ``artifact_id`` as the next version of ``name`` (audited as ``register``).

        Raises:
            RegistryStoreError: invalid name, actor or metadata that is not JSON.
            NotFoundError: the artifact, run or execution does not exist.
        """
        values: dict[str, Any] = {
            "name": check_name(name),
            "artifact_id": artifact_id,
            "run_id": run_id,
            "execution_id": execution_id,
            "metrics": check_json(dict(metrics or {}), "metrics", name),
            "blessing": None if blessing is None else check_json(dict(blessing), "blessing", name),
            "params": check_json(dict(params or {}), "params", name),
            "tags": check_json(dict(tags or {}), "tags", name),
            "description": check_text(description, "description", required=False),
            "status": VersionStatus.ACTIVE.value,
            "created_by": check_text(actor, "actor", required=True, limit=255),
        }
        why = check_text(reason, "reason", required=False)
        return self._db.write(lambda conn: self._insert_version(conn, values, why))

    def get_version(self, name: str, version: int) -> ModelVersionRecord:
        """The version ``version`` of ``name``; NotFoundError lists the versions there are."""
        check_version(version)
        return self._db.read(lambda conn: self._version(conn, name, version))

    def list_versions(
        self, name: str | None = None, include_archived: bool = False
    ) -> list[ModelVersionRecord]:
        """Versions by name then number; NotFoundError for a name never registered."""
        query = _VERSIONS.order_by(model_versions.c.name, model_versions.c.version)
        if name is not None:
            query = query.where(model_versions.c.name == name)
        if not include_archived:
            query = query.where(model_versions.c.status == VersionStatus.ACTIVE.value)

        def tx(conn: Connection) -> list[ModelVersionRecord]:
            if name is not None:
                self._require_model(conn, name)
            held: dict[int, list[str]] = {}
            for row in conn.execute(select(model_aliases).order_by(model_aliases.c.alias)):
                held.setdefault(row.version_id, []).append(row.alias)
            rows = conn.execute(query).mappings()
            return [version_record(row, tuple(held.get(row["id"], ()))) for row in rows]

        return self._db.read(tx)

    def list_models(self) -> list[ModelSummary]:
        """Every registered name with its newest active version and its aliases, by name."""
        active = model_versions.c.status == VersionStatus.ACTIVE.value
        query = (
            select(
                model_versions.c.name,
                func.max(case((active, model_versions.c.version))),
                func.count(case((active, 1))),
            )
            .group_by(model_versions.c.name)
            .order_by(model_versions.c.name)
        )

        def tx(conn: Connection) -> list[ModelSummary]:
            aliases: dict[str, dict[str, int]] = {}
            for row in conn.execute(self._alias_query()):
                aliases.setdefault(row.name, {})[row.alias] = row.version
            return [
                ModelSummary(name, latest, count, aliases.get(name, {}))
                for name, latest, count in conn.execute(query)
            ]

        return self._db.read(tx)

    def resolve(self, name: str, version_or_alias: str | int) -> ModelVersionRecord:
        """The version a reference names: ``3``, ``"3"``, ``"v3"``, ``"latest"`` or an alias.

        ``latest`` is the newest active version. Raises NotFoundError naming what exists.
        """
        return self._db.read(lambda conn: self._resolve(conn, name, version_or_alias))

    # -- aliases --------------------------------------------------------------------------
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        actor: str,
        reason: str,
        action: AuditAction | str = AuditAction.SET_ALIAS,
        expect_current: int | None = None,
    ) -> AuditRecord | None:
        """Point ``alias`` at ``version`` and audit it; None when it already pointed there.

        ``action`` records why (``set_alias``, ``promote`` or ``rollback``); with
        ``expect_current`` the move happens only if the alias is still held by that version
        (compare-and-set, so a rollback never undoes a promotion it did not see).

        Raises:
            RegistryStoreError: invalid alias, actor or reason; archived version; the alias
                moved since ``expect_current`` was read.
            NotFoundError: no such model or version.
        """
        move = AuditAction(action)
        if move not in ALIAS_MOVES:
            raise RegistryStoreError(f"action {move.value!r} does not move an alias")
        check_alias(alias)
        check_version(version)
        who = check_text(actor, "actor", required=True, limit=255)
        why = check_text(reason, "reason", required=True)

        return self._db.write(
            lambda conn: self._move_alias(
                conn, name, alias, version, move, actor=who, reason=why, expect=expect_current
            )
        )

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str) -> AuditRecord:
        """Remove ``alias`` from ``name`` (audited); NotFoundError when it is not set."""
        who = check_text(actor, "actor", required=True, limit=255)
        why = check_text(reason, "reason", required=True)

        def tx(conn: Connection) -> AuditRecord:
            self._lock(conn, name)
            current = self._require_holder(conn, name, alias)
            where = (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            conn.execute(delete(model_aliases).where(where))
            now = _now()
            removed = self._audit(
                conn,
                name,
                AuditAction.REMOVE_ALIAS,
                alias=alias,
                from_version=current,
                actor=who,
                reason=why,
                at=now,
            )
            # A split of a route that no longer exists would come back to life, unasked,
            # if the alias were set again.
            write_split(self, conn, name, alias, None, actor=who, reason=f"removed: {why}", at=now)
            return removed

        return self._db.write(tx)

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number for ``name`` (NotFoundError for an unknown name)."""

        def tx(conn: Connection) -> dict[str, int]:
            self._require_model(conn, name)
            return self._aliases(conn, name)

        return self._db.read(tx)

    def alias_history(self, name: str, alias: str) -> list[AuditRecord]:
        """Every change of ``alias``, newest first (NotFoundError if it never existed)."""

        def tx(conn: Connection) -> list[AuditRecord]:
            entries = self._alias_entries(conn, name, alias)
            if not entries:
                self._require_holder(conn, name, alias)  # raises, listing the aliases
            return entries[::-1]

        return self._db.read(tx)

    def previous_holder(self, name: str, alias: str) -> int | None:
        """The version that held ``alias`` before its current holder, or None.

        Rolling back walks back through the holders (a second rollback goes further back,
        it does not toggle); versions archived since are skipped.
        """
        return self._db.read(lambda conn: self._previous(conn, name, alias))

    # -- life cycle and audit -------------------------------------------------------------
    def archive(self, name: str, version: int, *, actor: str, reason: str) -> AuditRecord:
        """Archive a version: kept, hidden from listings and ``latest``, holds no alias.

        Raises:
            RegistryStoreError: it holds an alias (move or remove that first), or is archived.
            NotFoundError: no such model or version.
        """
        return self._set_status(name, version, VersionStatus.ARCHIVED, actor, reason)

    def unarchive(self, name: str, version: int, *, actor: str, reason: str) -> AuditRecord:
        """Make an archived version active again (audited)."""
        return self._set_status(name, version, VersionStatus.ACTIVE, actor, reason)

    def revision(self) -> int:
        """A number that changes whenever anything in the registry changes (0 when empty).

        Every change (a version, an alias, a split, a status) appends an audit entry in the
        same transaction, so the newest entry's id is the registry's revision: one indexed
        read, which lets a server poll for changes without re-reading the registry.
        """

        def tx(conn: Connection) -> int:
            return int(conn.execute(select(func.max(model_audit.c.id))).scalar() or 0)

        return self._db.read(tx)

    def audit(self, name: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """The newest ``limit`` changes (of ``name``), newest first."""
        query = select(model_audit).order_by(model_audit.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(model_audit.c.name == name)

        def tx(conn: Connection) -> list[AuditRecord]:
            if name is not None:
                self._require_model(conn, name)
            return [audit_record(row) for row in conn.execute(query).mappings()]

        return self._db.read(tx)

    # -- inside a transaction -------------------------------------------------------------
    def _insert_version(
        self, conn: Connection, values: dict[str, Any], reason: str
    ) -> ModelVersionRecord:
        for kind in ("artifact", "run", "execution"):
            if values[f"{kind}_id"] is not None:
                self._db.require(conn, kind, values[f"{kind}_id"])
        name = values["name"]
        self._lock(conn, name)
        now = _now()
        latest = conn.scalar(
            select(func.max(model_versions.c.version)).where(model_versions.c.name == name)
        )
        version = int(latest or 0) + 1
        conn.execute(
            insert(model_versions).values({**values, "version": version, "created_at": now})
        )
        actor = values["created_by"]
        self._audit(
            conn, name, AuditAction.REGISTER, to_version=version, actor=actor, reason=reason, at=now
        )
        return self._version(conn, name, version)

    def _move_alias(
        self,
        conn: Connection,
        name: str,
        alias: str,
        version: int,
        move: AuditAction,
        *,
        actor: str,
        reason: str,
        expect: int | None,
    ) -> AuditRecord | None:
        self._lock(conn, name)
        row = self._version_row(conn, name, version)
        if row["status"] == VersionStatus.ARCHIVED.value:
            raise RegistryStoreError(
                f"model {name!r} version {version} is archived and cannot hold an alias; "
                "unarchive it first"
            )
        current = self._aliases(conn, name).get(alias)
        if expect is not None and current != expect:
            raise RegistryStoreError(
                f"model {name!r}: alias {alias!r} moved to version {current} meanwhile "
                f"(expected {expect}); nothing was changed"
            )
        if current == version:
            return None
        now = _now()
        where = (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
        conn.execute(delete(model_aliases).where(where))
        conn.execute(
            insert(model_aliases).values(
                name=name, alias=alias, version_id=row["id"], updated_at=now
            )
        )
        return self._audit(
            conn,
            name,
            move,
            alias=alias,
            from_version=current,
            to_version=version,
            actor=actor,
            reason=reason,
            at=now,
        )

    def _set_status(
        self, name: str, version: int, status: VersionStatus, actor: str, reason: str
    ) -> AuditRecord:
        check_version(version)
        who = check_text(actor, "actor", required=True, limit=255)
        why = check_text(reason, "reason", required=True)
        action = AuditAction.ARCHIVE if status == VersionStatus.ARCHIVED else AuditAction.UNARCHIVE

        def tx(conn: Connection) -> AuditRecord:
            self._lock(conn, name)
            row = self._version_row(conn, name, version)
            if row["status"] == status.value:
                raise RegistryStoreError(
                    f"model {name!r} version {version} is already {status.value}"
                )
            held = sorted(a for a, v in self._aliases(conn, name).items() if v == version)
            if held:
                raise RegistryStoreError(
                    f"model {name!r} version {version} holds alias {', '.join(map(repr, held))}; "
                    "move or remove the alias before archiving it"
                )
            if status == VersionStatus.ARCHIVED:
                check_not_a_target(conn, name, version)
            conn.execute(
                update(model_versions)
                .where(model_versions.c.id == row["id"])
                .values(status=status.value)
            )
            return self._audit(
                conn, name, action, to_version=version, actor=who, reason=why, at=_now()
            )

        return self._db.write(tx)

    def _lock(self, conn: Connection, name: str) -> None:
        """Serialize writes about ``name`` (SQLite already holds its write lock)."""
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:cls, hashtext(:name))"),
                {"cls": _PG_LOCK_CLASS, "name": name},
            )

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
    ) -> AuditRecord:
        values = {
            "name": name,
            "action": action.value,
            "alias": alias,
            "from_version": from_version,
            "to_version": to_version,
            "actor": actor,
            "reason": reason,
            "at": at,
            "details": details,
        }
        row = conn.execute(insert(model_audit).values(values).returning(*model_audit.c))
        return audit_record(row.mappings().one())

    def _require_model(self, conn: Connection, name: str) -> None:
        found = conn.scalar(
            select(model_versions.c.id).where(model_versions.c.name == name).limit(1)
        )
        if found is None:
            names = conn.scalars(select(model_versions.c.name).distinct())
            hint = did_you_mean(str(name), names)
            raise NotFoundError(f"no model named {name!r} in the registry{hint}")

    def _version_row(self, conn: Connection, name: str, version: int) -> Mapping[Any, Any]:
        query = _VERSIONS.where(model_versions.c.name == name, model_versions.c.version == version)
        row = conn.execute(query).mappings().first()
        if row is None:
            self._require_model(conn, name)
            numbers = conn.scalars(
                select(model_versions.c.version).where(model_versions.c.name == name)
            )
            listed = version_ranges(list(numbers))
            raise NotFoundError(f"model {name!r} has no version {version} (versions: {listed})")
        return row

    def _version(self, conn: Connection, name: str, version: int) -> ModelVersionRecord:
        row = self._version_row(conn, name, version)
        held = conn.scalars(
            select(model_aliases.c.alias)
            .where(model_aliases.c.version_id == row["id"])
            .order_by(model_aliases.c.alias)
        )
        return version_record(row, tuple(held))

    def _resolve(self, conn: Connection, name: str, ref: str | int) -> ModelVersionRecord:
        if isinstance(ref, int):
            return self._version(conn, name, check_version(ref))
        text_ref = str(ref).strip()
        if (number := version_number(text_ref)) is not None:
            return self._version(conn, name, number)
        if text_ref == LATEST:
            active = (model_versions.c.name == name) & (
                model_versions.c.status == VersionStatus.ACTIVE.value
            )
            latest = conn.scalar(select(func.max(model_versions.c.version)).where(active))
            if latest is None:
                self._require_model(conn, name)
                raise NotFoundError(
                    f"model {name!r} has no active version ('latest' skips archived ones)"
                )
            return self._version(conn, name, int(latest))
        return self._version(conn, name, self._require_holder(conn, name, text_ref))

    def _alias_query(self) -> Any:
        return (
            select(model_aliases.c.name, model_aliases.c.alias, model_versions.c.version)
            .join_from(model_aliases, model_versions)
            .order_by(model_aliases.c.name, model_aliases.c.alias)
        )

    def _aliases(self, conn: Connection, name: str) -> dict[str, int]:
        query = self._alias_query().where(model_aliases.c.name == name)
        return {row.alias: row.version for row in conn.execute(query)}

    def _require_holder(self, conn: Connection, name: str, alias: str) -> int:
        aliases = self._aliases(conn, name)
        if alias not in aliases:
            self._require_model(conn, name)
            listed = ", ".join(sorted(aliases)) or "none"
            raise NotFoundError(f"model {name!r} has no alias {alias!r} (aliases: {listed})")
        return aliases[alias]

    def _alias_entries(self, conn: Connection, name: str, alias: str) -> list[AuditRecord]:
        query = (
            select(model_audit)
            .where(model_audit.c.name == name, model_audit.c.alias == alias)
            .order_by(model_audit.c.id)
        )
        return [audit_record(row) for row in conn.execute(query).mappings()]

    def _previous(self, conn: Connection, name: str, alias: str) -> int | None:
        current = self._require_holder(conn, name, alias)
        archived = set(
            conn.scalars(
                select(model_versions.c.version).where(
                    model_versions.c.name == name,
                    model_versions.c.status == VersionStatus.ARCHIVED.value,
                )
            )
        )
        stack = replay_holders(self._alias_entries(conn, name, alias))
        for version in reversed(stack):
            if version != current and version not in archived:
                return version
        return None

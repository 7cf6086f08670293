"""The model registry for people and pipelines: blessed versions, promotion, rollback, diff.

:class:`ModelRegistry` is the ML half of the registry. It sits on the engine's
:class:`~conveyor.store.metadata.registry_store.RegistryStore` (named, numbered versions of an
artifact, aliases, an audit trail) and adds what a model needs: a version is registered only
when its evaluation *blessed* it (unless told otherwise), aliases move only by
:meth:`~ModelRegistry.promote` and :meth:`~ModelRegistry.rollback` (each audited with time,
actor and reason), and two versions can be compared metric by metric and slice by slice.
:meth:`~ModelRegistry.set_traffic` shares an alias's requests between versions (A/B tests,
canaries, shadows); :meth:`~ModelRegistry.resolved_routes` is what a server applies.

Actors default to ``CONVEYOR_ACTOR``, then the OS user. Bundle integrity is checked by
:func:`verify_bundle`, which defers to ``conveyor.modeling.bundle.verify_bundle`` when that
module is installed.
"""

from __future__ import annotations

import builtins
import getpass
import importlib
import logging
import math
import numbers
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from conveyor.exceptions import ConveyorError, NotFoundError
from conveyor.store.metadata.registry_records import (
    AuditAction,
    AuditRecord,
    ModelSummary,
    ModelVersionRecord,
    TrafficSplit,
    check_alias,
    check_text,
)
from conveyor.store.metadata.registry_store import RegistryStore
from conveyor.store.metadata.registry_traffic import RouteTargets
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.workspace import Workspace

__all__ = [
    "ModelRegistry",
    "NotBlessedError",
    "RegistryError",
    "as_blessing_dict",
    "blessing_verdict",
    "default_actor",
    "verify_bundle",
]

logger = logging.getLogger(__name__)

_BUNDLE_MODULE = "conveyor.modeling.bundle"
_MAX_REASONS = 5


class RegistryError(ConveyorError):
    """The registry refused an operation (nothing to roll back to, unblessed model, ...)."""


class NotBlessedError(RegistryError):
    """A model version was not registered because its evaluation did not bless it."""


def default_actor() -> str:
    """Who is acting: ``CONVEYOR_ACTOR``, else the OS user, else ``"unknown"``."""
    actor = os.environ.get("CONVEYOR_ACTOR", "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def _failed_reasons(raw: Any) -> list[str]:
    """Messages of the checks that did not pass (entries with ``"passed": true`` are left out)."""
    if not isinstance(raw, list | tuple):
        return [str(raw)] if raw else []
    found = []
    for reason in raw:
        if not isinstance(reason, Mapping):
            found.append(str(reason))
        elif reason.get("passed") is not True:
            found.append(str(reason.get("message") or dict(reason)))
    return found


def as_blessing_dict(blessing: Any) -> dict[str, Any] | None:
    """A blessing as a plain mapping: mappings are copied, pydantic models dumped to JSON."""
    if blessing is None or isinstance(blessing, Mapping):
        return None if blessing is None else dict(blessing)
    dump = getattr(blessing, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json"))
    raise RegistryError(f"a blessing must be a mapping, got a {type(blessing).__name__}")


def blessing_verdict(blessing: Mapping[str, Any] | None) -> tuple[bool, list[str]]:
    """Whether ``blessing`` blesses the model, and the reasons it does not.

    A blessing is what the ``evaluate`` step writes (:class:`conveyor.modeling` ``Blessing``):
    a boolean ``"blessed"``, ``"reasons"`` (mappings with ``"passed"`` and ``"message"``, or
    plain strings) and an optional ``"note"``.

    Example:
        >>> blessing_verdict({"blessed": False, "reasons": ["auc 0.71 < 0.80"]})
        (False, ['auc 0.71 < 0.80'])
    """
    if blessing is None:
        return False, ["no blessing was given"]
    if not isinstance(blessing, Mapping):
        return False, [f"the blessing is a {type(blessing).__name__}, not a mapping"]
    blessed = blessing.get("blessed")
    reasons = _failed_reasons(blessing.get("reasons"))
    if not isinstance(blessed, bool):
        return False, [*reasons, "the blessing has no true/false 'blessed' field"]
    if not blessed and not reasons and blessing.get("note"):
        reasons = [str(blessing["note"])]
    return blessed, reasons


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _bundle_verifier() -> Callable[[str], object] | None:
    """``conveyor.modeling.bundle.verify_bundle`` when that module exists, else None."""
    try:
        module = importlib.import_module(_BUNDLE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _BUNDLE_MODULE.startswith(exc.name):
            return None
        raise  # the module exists but one of its own imports is missing
    verifier = getattr(module, "verify_bundle", None)
    return verifier if callable(verifier) else None


def verify_bundle(path: str) -> None:
    """Check the model bundle at ``path`` before it is handed out (a no-op until the
    bundle module exists); its errors propagate unchanged."""
    verifier = _bundle_verifier()
    if verifier is not None:
        verifier(path)


def _delta(a: Any, b: Any) -> float | int | None:
    def number(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    return b - a if number(a) and number(b) else None


def _side_by_side(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    keys = [*a, *(k for k in b if k not in a)]
    return {k: {"a": a.get(k), "b": b.get(k), "delta": _delta(a.get(k), b.get(k))} for k in keys}


def _slices(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found = metrics.get("slices")
    if not isinstance(found, Mapping):
        return {}
    return {str(k): v for k, v in found.items() if isinstance(v, Mapping)}


def _summary(record: ModelVersionRecord) -> dict[str, Any]:
    blessed = None if record.blessing is None else blessing_verdict(record.blessing)[0]
    return {
        "version": record.version,
        "aliases": list(record.aliases),
        "status": record.status.value,
        "blessed": blessed,
        "created_at": record.created_at.isoformat(),
        "run_id": record.run_id,
    }


class ModelRegistry:
    """Register, promote, roll back, archive and compare model versions.

    Example:
        >>> registry = ModelRegistry(workspace)  # doctest: +SKIP
        >>> v = registry.register("census", artifact_id, blessing=evaluation["blessing"])
        >>> registry.promote("census", v.version, reason="beats production on every slice")
        >>> registry.rollback("census", reason="latency regression in canary")
        >>> registry.load_bundle_path("census", "production")
        '/home/me/.conveyor/artifacts/objects/3f/3f9a...'
    """

    def __init__(self, workspace: Workspace | MetadataStore) -> None:
        """Use the metadata store of ``workspace`` (or that store itself); not closed here."""
        self.metadata = workspace.metadata if isinstance(workspace, Workspace) else workspace
        self._owned = False
        # Skipped traffic targets already logged: a server re-reads its routes every few
        # seconds, and one warning per lasting problem is enough.
        self._warned: dict[str, frozenset[str]] = {}
        self._warned_lock = threading.Lock()

    @classmethod
    def open(cls, metadata_url: str) -> ModelRegistry:
        """A registry on its own connection to ``metadata_url``; :meth:`close` it after use."""
        registry = cls(MetadataStore.open(metadata_url))
        registry._owned = True
        return registry

    def close(self) -> None:
        """Close the store if :meth:`open` made it."""
        if self._owned:
            self.metadata.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def store(self) -> RegistryStore:
        """The engine-level registry tables."""
        return self.metadata.registry

    # -- changes --------------------------------------------------------------------------
    def register(
        self,
        name: str,
        bundle_artifact_id: int,
        *,
        blessing: Any = None,
        require_blessing: bool = True,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
        run_id: int | None = None,
        execution_id: int | None = None,
        alias: str | None = None,
        actor: str | None = None,
        reason: str = "",
    ) -> ModelVersionRecord:
        """Register the model bundle artifact as the next version of ``name``.

        Metrics and params default to the artifact's ``metrics``/``params`` properties (or
        the blessing's ``metrics``). Registering again from the same execution (a retried
        step) returns the version it made. With ``alias`` the new version is promoted to it.

        Raises:
            NotBlessedError: ``require_blessing`` and the blessing is missing or negative;
                its message lists the blessing's reasons. Nothing is registered.
            NotFoundError: the artifact, run or execution does not exist.
            RegistryStoreError: invalid name or alias, metadata that is not JSON.
        """
        if alias is not None:
            check_alias(alias)
        blessing = as_blessing_dict(blessing)
        if require_blessing:
            self._check_blessed(name, blessing)
        artifact = self.metadata.get_artifact(bundle_artifact_id)
        who = actor or default_actor()
        record = self._registered_by(name, bundle_artifact_id, execution_id)
        if record is None:
            record = self.store.create_version(
                name,
                bundle_artifact_id,
                run_id=run_id,
                execution_id=execution_id,
                metrics=_finite(_pick(metrics, artifact.properties, blessing, "metrics")),
                blessing=_finite(blessing),
                params=_finite(_pick(params, artifact.properties, None, "params")),
                tags=tags,
                description=description,
                actor=who,
                reason=reason,
            )
        if alias is not None:
            why = reason or f"registered as version {record.version}"
            self.store.set_alias(
                name, alias, record.version, actor=who, reason=why, action=AuditAction.PROMOTE
            )
            record = self.store.get_version(name, record.version)
        return record

    def promote(
        self,
        name: str,
        version: int | str,
        alias: str = "production",
        *,
        reason: str,
        actor: str | None = None,
    ) -> AuditRecord | None:
        """Point ``alias`` at ``version`` (a number, or another alias whose holder to take).

        Returns the audit entry, or None when the alias already pointed there.

        Raises:
            NotFoundError: unknown model, version or alias.
            RegistryStoreError: archived version, invalid alias, empty reason.
        """
        target = self.store.resolve(name, version).version
        return self.store.set_alias(
            name,
            alias,
            target,
            actor=actor or default_actor(),
            reason=reason,
            action=AuditAction.PROMOTE,
        )

    def rollback(
        self, name: str, alias: str = "production", *, reason: str, actor: str | None = None
    ) -> AuditRecord:
        """Move ``alias`` back to the version that held it before (skipping archived ones).

        Rolling back twice goes two steps back. Raises RegistryError when the alias has no
        previous holder, NotFoundError for an unknown model or alias; nothing changes then.
        """
        check_alias(alias)
        check_text(reason, "reason", required=True)
        current = self.store.resolve(name, alias).version
        previous = self.store.previous_holder(name, alias)
        if previous is None:
            raise RegistryError(
                f"model {name!r}: alias {alias!r} (version {current}) has no previous holder "
                "to roll back to; promote a version instead"
            )
        entry = self.store.set_alias(
            name,
            alias,
            previous,
            actor=actor or default_actor(),
            reason=reason,
            action=AuditAction.ROLLBACK,
            expect_current=current,
        )
        if entry is None:  # pragma: no cover - previous_holder never returns the holder
            raise RegistryError(f"model {name!r}: alias {alias!r} did not move")
        return entry

    def archive(
        self, name: str, version: int | str, *, reason: str, actor: str | None = None
    ) -> AuditRecord:
        """Archive a version that holds no alias (kept for lineage, hidden from listings)."""
        target = self.store.resolve(name, version).version
        return self.store.archive(name, target, actor=actor or default_actor(), reason=reason)

    def unarchive(
        self, name: str, version: int | str, *, reason: str, actor: str | None = None
    ) -> AuditRecord:
        """Make an archived version active again."""
        target = self.store.resolve(name, version).version
        return self.store.unarchive(name, target, actor=actor or default_actor(), reason=reason)

    def set_traffic(
        self,
        name: str,
        weights: Mapping[str, float],
        *,
        route: str = "production",
        shadows: Sequence[str] = (),
        actor: str | None = None,
        reason: str | None = None,
    ) -> AuditRecord | None:
        """Share the requests for alias ``route`` between targets, in percents summing to 100.

        A target is another alias of the model (``"canary"``) or a version (``7``, ``"7"``,
        ``"v7"``, stored as ``"v7"``). Aliases are resolved when the split is read, so
        ``{"production": 90, "canary": 10}`` keeps sending 10 % to whatever ``canary`` points
        at. ``shadows`` get a copy of each request; their answers are logged, never returned.
        Returns the audit entry (action ``traffic``, old and new split in ``details``), or
        None when the route already had this split.

        Raises:
            RegistryStoreError: invalid percents (the message says what they sum to), a
                shadow that is also weighted, an archived version; nothing is changed.
            NotFoundError: unknown model, route alias or target.

        Example:
            >>> registry.set_traffic("census", {"production": 90, "canary": 10},
            ...                      reason="canary for the retrained model")  # doctest: +SKIP
        """
        # Versions may come as numbers ({7: 10}); the store checks everything else.
        targets = (
            {str(k): v for k, v in weights.items()} if isinstance(weights, Mapping) else weights
        )
        copies = shadows if isinstance(shadows, str) else [str(s) for s in shadows]
        who, why = actor or default_actor(), reason or ""
        return self.store.set_traffic(name, route, targets, copies, actor=who, reason=why)

    def clear_traffic(
        self,
        name: str,
        *,
        route: str = "production",
        actor: str | None = None,
        reason: str | None = None,
    ) -> AuditRecord | None:
        """Send all of ``route``'s requests back to its own version; None when it had no split."""
        return self.store.clear_traffic(
            name, route, actor=actor or default_actor(), reason=reason or ""
        )

    # -- reading --------------------------------------------------------------------------
    def traffic(self, name: str) -> dict[str, TrafficSplit]:
        """Route -> traffic split of a model (empty when none is set)."""
        return self.store.traffic(name)

    def resolved_routes(self, name: str) -> dict[str, RouteTargets]:
        """Every alias of a model -> ``({version: weight}, shadow versions)``, resolved now.

        An alias without a split is ``({its version: 1.0}, ())``. A split's targets become
        versions (two targets on one version add up; weights are fractions summing to 1); a
        target that no longer exists is skipped with a logged warning, and a route with no
        weighted target left falls back to its alias's own version.
        """
        resolved = self.store.resolve_routes(name)
        with self._warned_lock:
            new = frozenset(resolved.skipped) - self._warned.get(name, frozenset())
            self._warned[name] = frozenset(resolved.skipped)
        for message in sorted(new):
            logger.warning("%s", message)
        return resolved.routes

    def get(self, name: str, version_or_alias: int | str = "latest") -> ModelVersionRecord:
        """The version a reference names: ``3``, ``"3"``, ``"latest"``, ``"production"``."""
        return self.store.resolve(name, version_or_alias)

    def models(self) -> builtins.list[ModelSummary]:
        """Every registered model with its newest version and aliases."""
        return self.store.list_models()

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number."""
        return self.store.aliases(name)

    def revision(self) -> int:
        """A number that changes whenever anything in the registry changes (a server polls
        it to hot-reload only when something moved)."""
        return self.store.revision()

    def history(
        self, name: str, alias: str | None = None, limit: int = 100
    ) -> builtins.list[AuditRecord]:
        """The audit trail of a model (or of one of its aliases), newest first."""
        if alias is None:
            return self.store.audit(name, limit=limit)
        return self.store.alias_history(name, alias)[:limit]

    def diff(self, name: str, a: int | str, b: int | str) -> dict[str, Any]:
        """Compare two versions: metrics side by side with ``b - a`` deltas, per-slice
        metrics (from a ``"slices"`` mapping in the metrics) and the params that differ."""
        first, second = self.store.resolve(name, a), self.store.resolve(name, b)
        plain_a = {k: v for k, v in first.metrics.items() if k != "slices"}
        plain_b = {k: v for k, v in second.metrics.items() if k != "slices"}
        slices_a, slices_b = _slices(first.metrics), _slices(second.metrics)
        slice_names = [*slices_a, *(s for s in slices_b if s not in slices_a)]
        params = _side_by_side(first.params, second.params)
        return {
            "name": name,
            "a": _summary(first),
            "b": _summary(second),
            "metrics": _side_by_side(plain_a, plain_b),
            "slices": {
                s: _side_by_side(slices_a.get(s, {}), slices_b.get(s, {})) for s in slice_names
            },
            "params": {
                k: {"a": v["a"], "b": v["b"]} for k, v in params.items() if v["a"] != v["b"]
            },
        }

    def load_bundle_path(self, name: str, version_or_alias: int | str = "production") -> str:
        """The URI of the bundle a reference names, after :func:`verify_bundle` checked it."""
        record = self.store.resolve(name, version_or_alias)
        verify_bundle(record.artifact_uri)
        return record.artifact_uri

    def list(
        self, name: str | None = None, *, include_archived: bool = False
    ) -> builtins.list[ModelVersionRecord]:
        """Versions (of ``name``) by name and number; archived ones only when asked."""
        return self.store.list_versions(name, include_archived=include_archived)

    # -- helpers --------------------------------------------------------------------------
    def _check_blessed(self, name: str, blessing: Mapping[str, Any] | None) -> None:
        blessed, reasons = blessing_verdict(blessing)
        if blessed:
            return
        shown = "; ".join(reasons[:_MAX_REASONS]) or "no reason given"
        if len(reasons) > _MAX_REASONS:
            shown += f"; ... ({len(reasons) - _MAX_REASONS} more)"
        raise NotBlessedError(
            f"model {name!r} was not registered: it is not blessed ({shown}); pass "
            "require_blessing=False to register it anyway"
        )

    def _registered_by(
        self, name: str, artifact_id: int, execution_id: int | None
    ) -> ModelVersionRecord | None:
        if execution_id is None:
            return None
        try:
            versions = self.store.list_versions(name, include_archived=True)
        except NotFoundError:
            return None
        return next(
            (v for v in versions if (v.execution_id, v.artifact_id) == (execution_id, artifact_id)),
            None,
        )


def _pick(
    given: Mapping[str, Any] | None,
    properties: Mapping[str, Any],
    blessing: Mapping[str, Any] | None,
    key: str,
) -> dict[str, Any]:
    """``given``, else the artifact's ``key`` property, else the blessing's, else ``{}``."""
    if given is not None:
        return dict(given)
    for source in (properties.get(key), (blessing or {}).get(key)):
        if isinstance(source, Mapping):
            return dict(source)
    return {}

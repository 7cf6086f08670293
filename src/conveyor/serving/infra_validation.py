"""Infra validation: serve a candidate bundle for real and check its answers before deploying it.

:func:`validate_serving` is the work behind the ``infra_validate`` step, usable without the
engine:

1. load the candidate bundle (verified) and predict offline on the canary rows, the first
   ``requests * rows_per_request`` rows of the examples that a client can send
   (:func:`conveyor.serving.canary_requests.canary_rows`);
2. create a throw-away workspace in a temporary folder and register the bundle there under
   ``model_name`` with the alias ``candidate``, as a deployment would find it;
3. start ``conveyor serve`` on that workspace as a separate process on 127.0.0.1 and a free
   port (:class:`~conveyor.serving.server_process.ServerProcess`) and wait until it is ready;
4. send the canary requests with a real HTTP client, compare every answer with the offline
   predictions (labels equal, numbers within ``tolerance``) and time them;
5. stop the server by its pid (SIGTERM, then SIGKILL) and delete the temporary folder, always.

The verdict is an :class:`InfraValidation` record: blessed or not, with every reason, the
requests sent, the first differences, latency percentiles and the server's version. The step
raises :class:`InfraValidationFailed` when it is not blessed, so nothing after it runs.

Errors::

    ConveyorError
    └── InfraValidationError        bad settings, or examples the model cannot take
        └── InfraValidationFailed   the candidate failed (carries .result, every reason)
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from conveyor.config import Settings
from conveyor.core.materializers import Materializer
from conveyor.exceptions import ConveyorError
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.modeling.bundle_errors import SignatureError
from conveyor.registry import ModelRegistry
from conveyor.registry.recorded_bundle import record_bundle
from conveyor.serving.canary_requests import (
    PROTOCOLS,
    Difference,
    Protocol,
    canary_rows,
    compare,
    decode_answer,
    encode_request,
    offline_outputs,
    request_path,
)
from conveyor.serving.server_process import (
    ServerProcess,
    ServerStartError,
    import_httpx,
    quiet_http_logs,
)
from conveyor.store.workspace import Workspace

__all__ = [
    "CANDIDATE_ALIAS",
    "InfraValidation",
    "InfraValidationError",
    "InfraValidationFailed",
    "InfraValidationMaterializer",
    "Mismatch",
    "RequestFailure",
    "register_candidate",
    "throwaway_workspace",
    "validate_serving",
]

CANDIDATE_ALIAS = "candidate"
RECORD_FILE = "infra_validation.json"
_JSON = {"Content-Type": "application/json"}
SHOWN = 5
"""How many mismatches and failed requests a record keeps (the counts cover them all)."""


class InfraValidationError(ConveyorError):
    """Infra validation cannot be done as asked: bad settings, or unusable examples."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mismatch(_Record):
    """One served output that differs from the offline prediction."""

    request: int
    row: int
    output: str
    expected: Any
    got: Any


class RequestFailure(_Record):
    """A canary request the server did not answer with 200 (or not in its protocol)."""

    request: int
    rows: list[int]
    status: int | None
    error: str


class InfraValidation(_Record):
    """The verdict of infra validation ("InfraValidation" artifact, ``infra_validation.json``).

    Example:
        >>> result = validate_serving("bundle", frame, requests=5)
        >>> result.blessed, result.requests, result.reasons
        (True, 5, [])
    """

    blessed: bool
    reasons: list[str]
    protocol: str
    requests: int = 0
    """Canary requests sent."""
    rows: int = 0
    """Rows sent in them."""
    rows_skipped: int = 0
    """Rows of the examples left out because no protocol can carry one of their values."""
    failed_requests: int = 0
    failures: list[RequestFailure] = Field(default_factory=list)
    """The first failed requests."""
    mismatched_rows: int = 0
    mismatches: list[Mismatch] = Field(default_factory=list)
    """The first mismatches."""
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    startup_s: float | None = None
    server_version: str | None = None
    model_name: str = ""
    bundle_sha256: str = ""


class InfraValidationFailed(InfraValidationError):
    """The candidate failed infra validation; the pipeline must stop before deployment.

    Attributes:
        result: the :class:`InfraValidation` record with every reason.
    """

    def __init__(self, message: str, result: InfraValidation | None = None) -> None:
        super().__init__(message)
        self.result = result


class InfraValidationMaterializer(Materializer):
    """:class:`InfraValidation` <-> ``infra_validation.json`` ("InfraValidation")."""

    python_types = (InfraValidation,)
    artifact_type = "InfraValidation"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        result: InfraValidation = obj
        (folder / RECORD_FILE).write_text(result.model_dump_json(indent=1) + "\n", "utf-8")
        return {
            "blessed": result.blessed,
            "requests": result.requests,
            "mismatched_rows": result.mismatched_rows,
            "failed_requests": result.failed_requests,
            "latency_ms_p50": result.latency_ms_p50,
            "latency_ms_p99": result.latency_ms_p99,
            "server_version": result.server_version,
        }

    def load(self, folder: Path, python_type: type) -> Any:
        return InfraValidation.model_validate_json((folder / RECORD_FILE).read_text("utf-8"))


# ---------------------------------------------------------------------------- workspace


def _remove_tree(folder: Path) -> None:
    """Delete ``folder``, making read-only entries writable where deleting them failed."""

    def retry(function: Any, path: str, *_: Any) -> None:
        os.chmod(os.path.dirname(path), stat.S_IRWXU)
        function(path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=retry)
    else:  # pragma: no cover - Python 3.11
        shutil.rmtree(folder, onerror=retry)


@contextmanager
def throwaway_workspace() -> Iterator[Settings]:
    """Settings of a new workspace in a temporary folder, deleted on leaving."""
    folder = Path(tempfile.mkdtemp(prefix="conveyor-infra-"))
    try:
        yield Settings(
            home=folder,
            metadata_url=f"sqlite:///{folder / 'metadata.db'}",
            artifact_url=str(folder / "artifacts"),
            max_workers=1,
        )
    finally:
        _remove_tree(folder)


def register_candidate(settings: Settings, bundle: Path, name: str) -> int:
    """Store ``bundle`` in the workspace, record it as a run's output and register it as the
    next version of ``name`` under the alias ``candidate``; return the version number."""
    workspace = Workspace.open(settings, recover=False)
    try:
        recorded = record_bundle(workspace, bundle, "infra_validate")
        record = ModelRegistry(workspace).register(
            name,
            recorded.artifact_id,
            require_blessing=False,
            run_id=recorded.run_id,
            execution_id=recorded.execution_id,
            alias=CANDIDATE_ALIAS,
            reason="infra validation: the candidate, served in a throw-away workspace",
        )
        return record.version
    finally:
        workspace.close()


# ---------------------------------------------------------------------------- canaries


class _Tally:
    """What the canary requests found, request by request."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.failures: list[RequestFailure] = []
        self.mismatches: list[Mismatch] = []
        self.mismatched_rows: set[int] = set()
        self.requests = 0
        self.rows = 0

    def fail(self, request: int, rows: list[int], status: int | None, error: str) -> None:
        self.failures.append(RequestFailure(request=request, rows=rows, status=status, error=error))

    def differ(self, request: int, differences: list[Difference]) -> None:
        for d in differences:
            self.mismatched_rows.add(d.row)
            self.mismatches.append(
                Mismatch(
                    request=request, row=d.row, output=d.output, expected=d.expected, got=d.got
                )
            )


def _error_text(body: bytes) -> str:
    """The ``{"error": ...}`` of an answer, or the start of its body."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    text = str(error) if error else body[:300].decode("utf-8", "replace")
    return text[:500]


def _send_canaries(
    base_url: str,
    path: str,
    batches: list[pd.DataFrame],
    expected: dict[str, np.ndarray],
    protocol: Protocol,
    tolerance: float,
) -> _Tally:
    """Send every batch, compare every answer with the offline outputs."""
    httpx = import_httpx()
    tally = _Tally()
    start = 0
    names = list(expected)
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for index, rows in enumerate(batches):
            positions = [int(p) for p in rows.index]
            want = {k: v[start : start + len(rows)] for k, v in expected.items()}
            start += len(rows)
            body = encode_request(rows, protocol, f"canary-{index}")
            tally.requests += 1
            tally.rows += len(rows)
            began = time.perf_counter()
            try:
                answer = client.post(path, content=body, headers=_JSON)
            except httpx.HTTPError as exc:
                tally.fail(index, positions, None, f"{type(exc).__name__}: {exc}")
                continue
            tally.latencies_ms.append((time.perf_counter() - began) * 1000.0)
            if answer.status_code != 200:
                tally.fail(index, positions, answer.status_code, _error_text(answer.content))
                continue
            try:
                got = decode_answer(answer.content, answer.headers, protocol, names)
            except ValueError as exc:
                tally.fail(index, positions, 200, f"an answer that is not {protocol}: {exc}")
                continue
            tally.differ(index, compare(want, got, positions, tolerance=tolerance))
    return tally


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _reasons(tally: _Tally, p99: float | None, max_p99_ms: float | None) -> list[str]:
    reasons: list[str] = []
    if tally.failures:
        first = tally.failures[0]
        status = f"HTTP {first.status}" if first.status is not None else "no answer"
        reasons.append(
            f"{len(tally.failures)} of {tally.requests} canary requests failed; the first "
            f"(request {first.request}, rows {first.rows[0]}-{first.rows[-1]}): {status}: "
            f"{first.error}"
        )
    if tally.mismatches:
        first_mismatch = tally.mismatches[0]
        reasons.append(
            f"{len(tally.mismatched_rows)} of {tally.rows} rows were answered differently from "
            f"the offline predictions; the first: row {first_mismatch.row} "
            f"{first_mismatch.output}: expected {first_mismatch.expected!r}, "
            f"got {first_mismatch.got!r}"
        )
    if p99 is not None and max_p99_ms is not None and p99 > max_p99_ms:
        reasons.append(f"latency p99 {p99:.1f} ms is over the limit of {max_p99_ms:g} ms")
    return reasons


def _verdict(tally: _Tally, max_p99_ms: float | None, known: dict[str, Any]) -> InfraValidation:
    """The record of what the canaries found; blessed when nothing went wrong."""
    p99 = _percentile(tally.latencies_ms, 99)
    reasons = _reasons(tally, p99, max_p99_ms)
    return InfraValidation(
        blessed=not reasons,
        reasons=reasons,
        requests=tally.requests,
        rows=tally.rows,
        failed_requests=len(tally.failures),
        failures=tally.failures[:SHOWN],
        mismatched_rows=len(tally.mismatched_rows),
        mismatches=tally.mismatches[:SHOWN],
        latency_ms_p50=_percentile(tally.latencies_ms, 50),
        latency_ms_p99=p99,
        **known,
    )


def _server_version(base_url: str) -> str | None:
    httpx = import_httpx()
    try:
        answer = httpx.get(f"{base_url}/v2", timeout=5.0)
        return str(answer.json().get("version")) if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


# ---------------------------------------------------------------------------- the check


def _check_settings(
    requests: int,
    rows_per_request: int,
    protocol: str,
    timeout_s: float,
    tolerance: float,
    memory_budget: str,
) -> None:
    problems = [
        ("requests", requests < 1, f"must be at least 1, got {requests}"),
        ("rows_per_request", rows_per_request < 1, f"must be at least 1, got {rows_per_request}"),
        ("protocol", protocol not in PROTOCOLS, f"must be one of {list(PROTOCOLS)}, got "
         f"{protocol!r}"),
        ("timeout_s", not timeout_s > 0, f"must be more than 0, got {timeout_s}"),
        ("tolerance", not tolerance >= 0, f"must be 0 or more, got {tolerance}"),
    ]  # fmt: skip
    for name, bad, message in problems:
        if bad:
            raise InfraValidationError(f"infra validation: {name} {message}")
    try:
        from conveyor.serving.server import parse_size  # uvicorn: the serving extra
    except ImportError:
        return  # then the server cannot start either, and says why
    try:
        parse_size(memory_budget)
    except ValueError as exc:
        raise InfraValidationError(f"infra validation: memory_budget: {exc}") from exc


def _canaries(
    bundle: LoadedBundle, examples: pd.DataFrame, rows: int, skip_missing: bool
) -> tuple[pd.DataFrame, int]:
    try:
        return canary_rows(examples, bundle.signature, rows, skip_missing=skip_missing)
    except SignatureError as exc:
        raise InfraValidationError(
            f"infra validation: the examples do not fit the model's signature: {exc}"
        ) from exc


def validate_serving(
    bundle: str | Path,
    examples: pd.DataFrame,
    *,
    model_name: str = "model",
    requests: int = 20,
    rows_per_request: int = 8,
    protocol: Protocol = "v2",
    timeout_s: float = 60.0,
    max_p99_ms: float | None = 1000.0,
    tolerance: float = 1e-9,
    skip_missing: bool = True,
    memory_budget: str = "2GB",
    port: int | None = None,
) -> InfraValidation:
    """Serve ``bundle`` with ``conveyor serve`` in a separate process and check its answers.

    Args:
        bundle: the candidate bundle folder.
        examples: rows to build the canary requests from (extra columns are ignored).
        model_name: the name the candidate is served under (in the throw-away registry).
        requests: canary requests to send.
        rows_per_request: rows in each request.
        protocol: ``"v2"`` (Open Inference Protocol) or ``"v1"`` (TF Serving REST).
        timeout_s: how long the server may take to be ready.
        max_p99_ms: the 99th percentile of the requests' latency must not exceed this;
            None: latency is measured, not checked.
        tolerance: largest absolute difference allowed between a served and an offline
            probability or regression value; labels must be equal.
        skip_missing: leave out rows with a missing value outside float columns (no protocol
            can carry one); False sends them with ``null``, which the server refuses.
        memory_budget: the server's ``--memory-budget``.
        port: the server's port; None picks a free one.

    Returns:
        The verdict; ``blessed`` is False with every reason when the server did not start,
        a request failed, an answer differed or latency was over the limit.

    Raises:
        InfraValidationError: a bad setting, or examples the model cannot take (a missing
            column, a column of another type).
        BundleError: the bundle cannot be loaded offline.

    Example:
        >>> result = validate_serving(model.path, frame, model_name="census", requests=5)
        >>> result.blessed, result.latency_ms_p99
        (True, 12.7)
    """
    _check_settings(requests, rows_per_request, protocol, timeout_s, tolerance, memory_budget)
    loaded = load_bundle(bundle)
    rows, skipped = _canaries(loaded, examples, requests * rows_per_request, skip_missing)
    known: dict[str, Any] = {
        "protocol": protocol,
        "rows_skipped": skipped,
        "model_name": model_name,
        "bundle_sha256": loaded.manifest.sha256,
    }
    if rows.empty:
        why = f"no example row can be sent ({skipped} have a value no protocol can carry)"
        return InfraValidation(blessed=False, reasons=[why], **known)
    expected = offline_outputs(loaded, rows)
    batches = [rows.iloc[i : i + rows_per_request] for i in range(0, len(rows), rows_per_request)]
    with throwaway_workspace() as settings, quiet_http_logs():
        version = register_candidate(settings, Path(bundle), model_name)
        server = ServerProcess(
            settings, port=port, models=[model_name], memory_budget=memory_budget
        )
        began = time.monotonic()
        try:
            server.start(timeout_s)
            known["startup_s"] = round(time.monotonic() - began, 3)
            known["server_version"] = _server_version(server.url)
            path = request_path(protocol, model_name, version)
            tally = _send_canaries(server.url, path, batches, expected, protocol, tolerance)
        except ServerStartError as exc:
            return InfraValidation(
                blessed=False, reasons=[f"the server did not start: {exc}"], **known
            )
        finally:
            server.stop()
    return _verdict(tally, max_p99_ms, known)

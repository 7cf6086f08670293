"""Manual run requests: ``conveyor trigger PIPELINE`` queues one for the controller.

The queue is a folder of JSON files, ``<home>/ct/requests/<id>.json``, one request each. A
request is written atomically (temporary file, fsync, rename), so the controller never reads
half a request; ids start with the UTC time, so sorting the names gives the order they were
made. The controller reads the queue with :func:`read_requests`, moves the requests into its
:class:`~conveyor.ct.state.TriggerState` (``state.with_requests(...)``), saves the state, and only
then deletes the files with :func:`remove_request`: a crash in between leaves a request in both,
and the state skips ids it already holds, so nothing is lost or run twice.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.ct.errors import TriggerError
from conveyor.ct.policy_model import Policy
from conveyor.ct.state import ManualRequest, ct_dir, write_json_atomic
from conveyor.exceptions import did_you_mean

__all__ = [
    "check_request",
    "current_actor",
    "read_requests",
    "remove_request",
    "request_manual_run",
    "requests_dir",
]


def requests_dir(home: Path) -> Path:
    """``<home>/ct/requests``: the manual request queue."""
    return ct_dir(home) / "requests"


def current_actor() -> str:
    """Who is asking: ``CONVEYOR_ACTOR``, else the OS user, else ``"unknown"``."""
    try:
        return os.environ.get("CONVEYOR_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no user name (a container without a passwd entry)
        return "unknown"


def check_request(
    policy: Policy, pipeline: str, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check that ``pipeline`` may be triggered with ``params``; return the run's parameters.

    Raises:
        TriggerError: ``pipeline`` is not in the policy's ``[pipelines]``.
        ParameterError: a parameter is unknown, ill-typed, or a required one is missing.
        PipelineLoadError: the pipeline file no longer imports.
    """
    if pipeline not in policy.pipelines:
        where = policy.source or "the policy"
        raise TriggerError(
            f"pipeline {pipeline!r} is not declared in {where} as [pipelines.{pipeline}]"
            + did_you_mean(pipeline, policy.pipelines)
        )
    trigger = policy.manual_trigger(pipeline)
    merged = {**trigger.params, **(params or {})}
    policy.pipelines[pipeline].load().resolve_params(merged)
    return merged


def request_manual_run(
    home: Path,
    policy: Policy,
    pipeline: str,
    params: Mapping[str, Any] | None = None,
    *,
    requested_by: str | None = None,
    now: dt.datetime | None = None,
) -> ManualRequest:
    """Queue a request to run ``pipeline`` now; the controller picks it up at its next poll.

    ``params`` overlay the pipeline's and the manual trigger's; values may be strings as typed
    on a command line (the pipeline coerces them). Everything is checked before anything is
    written.

    Raises:
        TriggerError: unknown pipeline, or ``now`` without a time zone.
        ParameterError: a parameter does not fit the pipeline.

    Example:
        >>> request = request_manual_run(home, policy, "census", {"until_span": "3"})  # doctest: +SKIP
        >>> request.path.name  # doctest: +SKIP
        '20240101T101500123456Z-1a2b3c4d.json'
    """  # noqa: E501
    check_request(policy, pipeline, params)
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TriggerError(f"request time {moment.isoformat()} has no time zone")
    moment = moment.astimezone(dt.UTC)
    request_id = f"{moment:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    path = requests_dir(home) / f"{request_id}.json"
    request = ManualRequest(
        id=request_id,
        pipeline=pipeline,
        params=dict(params or {}),
        requested_at=moment,
        requested_by=requested_by or current_actor(),
        path=path,
    )
    write_json_atomic(path, request.to_json())
    return request


def read_requests(home: Path) -> list[ManualRequest]:
    """The queued requests, oldest first (none when the queue does not exist).

    Raises:
        TriggerError: a queue file is not a request (the message names it).
    """
    folder = requests_dir(home)
    if not folder.is_dir():
        return []
    found: list[ManualRequest] = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue  # a request still being written
        try:
            found.append(ManualRequest.from_json(json.loads(path.read_text("utf-8")), path))
        except FileNotFoundError:
            continue  # consumed meanwhile
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TriggerError(
                f"{path} is not a manual request ({exc}); move it out of {folder}"
            ) from exc
    return sorted(found, key=lambda r: (r.requested_at, r.id))


def remove_request(home: Path, request: ManualRequest) -> None:
    """Delete a request's queue file (after the controller saved it into its state)."""
    path = request.path or requests_dir(home) / f"{request.id}.json"
    path.unlink(missing_ok=True)

"""A model bundle folder stored as the output of a recorded run: what the registry accepts.

The registry registers artifacts that a run produced (their lineage is the point of it).
Code that holds a bundle made outside a pipeline (the infra validation's throw-away
workspace, tests, benchmarks) records it with :func:`record_bundle`: the bundle is stored in
the artifact store and recorded as the ``model`` output of a one-step run of ``pipeline``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from conveyor.core.materializers import save_artifact
from conveyor.modeling.bundle import ModelBundle
from conveyor.store.metadata import NewArtifact
from conveyor.store.metadata.records import RunStatus
from conveyor.store.workspace import Workspace

__all__ = ["RecordedBundle", "record_bundle"]


@dataclass(frozen=True)
class RecordedBundle:
    """A stored bundle and the run that recorded it."""

    artifact_id: int
    uri: str
    run_id: int
    execution_id: int


def record_bundle(
    workspace: Workspace, folder: str | os.PathLike[str], pipeline: str
) -> RecordedBundle:
    """Store the bundle in ``folder`` and record it as the ``model`` output of a finished
    one-step run of ``pipeline`` (registered on first use)."""
    handle = ModelBundle(uri="", path=Path(folder), type_name="ModelBundle", sha256="")
    stored, type_name, properties = save_artifact(workspace.artifacts, handle)
    meta = workspace.metadata
    run = meta.create_run(
        meta.register_pipeline(pipeline, {}, pipeline), {}, {}, socket.gethostname(), os.getpid()
    )
    execution = meta.create_executions(run.id, [("model", "model", {})])["model"]
    made = NewArtifact(type_name, stored.uri, stored.sha256, stored.size, properties)
    artifact = meta.succeed_execution(execution, {}, {"model": made})["model"]
    meta.finish_run(run.id, RunStatus.SUCCEEDED)
    return RecordedBundle(artifact.id, stored.uri, run.id, execution)

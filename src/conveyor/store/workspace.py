"""A workspace: the metadata store and artifact store that one set of settings points at.

Opening a workspace also tidies after crashes: runs whose runner died are marked
``interrupted`` and stale staging folders are removed, so every command sees a consistent
picture.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from conveyor.config import Settings
from conveyor.store.artifact_store import ArtifactStore
from conveyor.store.metadata.store import MetadataStore

__all__ = ["Workspace", "pid_alive"]

HEARTBEAT_INTERVAL_S = float(os.environ.get("CONVEYOR_HEARTBEAT_INTERVAL", "5"))
STALE_AFTER_S = float(os.environ.get("CONVEYOR_STALE_AFTER", str(HEARTBEAT_INTERVAL_S * 6)))


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this host (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class Workspace:
    """Settings plus the two stores they name.

    Example:
        >>> from conveyor.config import load_settings
        >>> ws = Workspace.open(load_settings(home="/tmp/ws"))
        >>> ws.metadata.list_runs()
        []
    """

    settings: Settings
    metadata: MetadataStore
    artifacts: ArtifactStore

    @classmethod
    def open(cls, settings: Settings, recover: bool = True) -> Workspace:
        """Open (creating if needed) both stores; optionally mark dead runs interrupted.

        The database is reached first: when it is unreachable nothing has been created.
        """
        metadata = MetadataStore.open(settings.metadata_url)
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
            artifacts = ArtifactStore.open(settings.artifact_url)
        except BaseException:
            metadata.close()
            raise
        workspace = cls(settings, metadata, artifacts)
        if recover:
            workspace.recover()
        return workspace

    def recover(self) -> list[int]:
        """Mark runs whose runner is gone as interrupted; sweep stale staging folders."""
        interrupted = self.metadata.recover_interrupted(
            socket.gethostname(), pid_alive, STALE_AFTER_S
        )
        self.artifacts.sweep_staging()
        return interrupted

    def close(self) -> None:
        self.metadata.close()

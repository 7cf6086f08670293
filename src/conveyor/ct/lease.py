"""The controller's lease: at most one ``conveyor watch`` acts on a metadata database.

The lease lives in the activity store (``ct_leases``), named ``controller``, owned by
``HOST:PID:NONCE``. The controller takes it at start and renews it at every poll; every write
that acts (a trigger consumed, a run started) is fenced by it, so a controller that was paused
past its lease and lost it to another never acts again. A second controller refuses to start
while the lease is live, except when the holder is a process of this host that no longer
exists (``kill -9``): then it releases the dead holder's lease and takes it at once, instead of
waiting for the time to live to run out.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

from conveyor.ct.controller_errors import ControllerBusyError, ControllerError
from conveyor.store.metadata.activity import ActivityStore
from conveyor.store.workspace import pid_alive

__all__ = ["LEASE_NAME", "ControllerLease", "lease_owner"]

LEASE_NAME = "controller"


def lease_owner() -> str:
    """``HOST:PID:NONCE`` for this process (the nonce tells two lives of one pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_here(owner: str) -> bool:
    """Whether ``owner`` names a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not pid_alive(int(pid_text))


class ControllerLease:
    """Take, renew and give up the ``controller`` lease.

    Args:
        activity: The activity store of the workspace.
        ttl: How long the lease lasts without a renewal (a few polls).
        owner: The holder's name (default: :func:`lease_owner`).

    Example:
        >>> lease = ControllerLease(workspace.metadata.activity, dt.timedelta(seconds=30))
        >>> lease.acquire()  # doctest: +SKIP
        >>> lease.renew()  # at every poll  # doctest: +SKIP
    """

    def __init__(
        self, activity: ActivityStore, ttl: dt.timedelta, owner: str | None = None
    ) -> None:
        self.activity = activity
        self.ttl = ttl
        self.owner = owner or lease_owner()
        self.took_over: str | None = None
        """The dead holder whose lease :meth:`acquire` took, if any."""

    def acquire(self) -> None:
        """Take the lease, or take it over from a dead process of this host.

        Raises:
            ControllerBusyError: a live controller holds it (the message says which, until when).
        """
        if self.activity.acquire_lease(LEASE_NAME, self.owner, self.ttl):
            return
        held = self.activity.lease(LEASE_NAME)
        if held is not None and _dead_here(held.owner):
            self.activity.release_lease(LEASE_NAME, held.owner)
            if self.activity.acquire_lease(LEASE_NAME, self.owner, self.ttl):
                self.took_over = held.owner
                return
            held = self.activity.lease(LEASE_NAME)  # another restarted controller won the race
        who = held.owner if held is not None else "another controller"
        until = f" until {held.expires_at:%Y-%m-%d %H:%M:%S} UTC" if held is not None else ""
        raise ControllerBusyError(
            f"another controller ({who}) holds the lease of this metadata database{until}; "
            "stop it first (one conveyor watch per workspace), or wait for its lease to expire "
            "if it is gone"
        )

    def renew(self) -> None:
        """Extend the lease by ``ttl`` from now.

        Raises:
            ControllerError: another controller took the lease (this one must stop acting).
        """
        if not self.activity.renew_lease(LEASE_NAME, self.owner, self.ttl):
            held = self.activity.lease(LEASE_NAME)
            who = held.owner if held is not None else "nobody"
            raise ControllerError(
                f"the controller lost its lease (now held by {who}); it stops without acting"
            )

    def release(self) -> None:
        """Give the lease up (nothing happens when it is no longer ours)."""
        self.activity.release_lease(LEASE_NAME, self.owner)

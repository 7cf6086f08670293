"""Errors of the continuous-training controller (``conveyor watch``).

They hang under :class:`conveyor.exceptions.ConveyorError`, so the CLI prints the message and
exits 2::

    ConveyorError
    └── ControllerError            the controller cannot start or must stop
        └── ControllerBusyError    another controller holds the lease
"""

from __future__ import annotations

from conveyor.exceptions import ConveyorError

__all__ = ["ControllerBusyError", "ControllerError"]


class ControllerError(ConveyorError):
    """The controller cannot start, or must stop (it lost its lease)."""


class ControllerBusyError(ControllerError):
    """Another live controller holds the ``controller`` lease of this metadata database."""

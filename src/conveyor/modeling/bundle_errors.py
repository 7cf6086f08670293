"""Errors of model bundles, flavours and training.

They hang under :class:`conveyor.exceptions.ConveyorError`, so the CLI maps them to exit
code 2 like every other conveyor error::

    ConveyorError
    └── BundleError                   anything wrong with a model bundle or making one
        ├── BundleIntegrityError      a file changed, appeared or went missing; bad manifest
        ├── UnsafeBundleError         a file would run code when loaded (pickle, untrusted type)
        ├── SignatureError            input does not fit the bundle's signature (names the column)
        ├── FlavourError              unknown flavour, library missing, model it cannot handle
        └── TrainingError             bad estimator spec, training function failed

Errors of scikit-learn, skops, XGBoost, LightGBM and of user training code are caught at the
boundary and re-raised as one of these with the original chained (``raise ... from exc``).
"""

from __future__ import annotations

from conveyor.exceptions import ConveyorError

__all__ = [
    "BundleError",
    "BundleIntegrityError",
    "FlavourError",
    "SignatureError",
    "TrainingError",
    "UnsafeBundleError",
]


class BundleError(ConveyorError):
    """Root of the errors of model bundles, flavours and training."""


class BundleIntegrityError(BundleError):
    """A bundle's files do not match its manifest, or the manifest does not match its hash.

    Example:
        >>> verify_bundle("bundle/")  # after editing bundle/model/model.skops
        Traceback (most recent call last):
        BundleIntegrityError: bundle/: file 'model/model.skops' was changed (sha256 ...)
    """


class UnsafeBundleError(BundleError):
    """Loading a file of the bundle could run code (a pickle, an untrusted skops type)."""


class SignatureError(BundleError):
    """Input data does not fit a signature: unknown or missing column, wrong type, nulls."""


class FlavourError(BundleError):
    """A flavour is unknown, its library is not installed, or it cannot handle a model."""


class TrainingError(BundleError):
    """Training could not start or failed: bad spec, bad data, a training function raised."""

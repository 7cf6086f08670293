"""The one exception tree of conveyor.

Every error conveyor raises on purpose derives from :class:`ConveyorError`; errors from
libraries and from user code are caught at the boundary and re-raised as one of these, with
the original chained (``raise ... from exc``)::

    ConveyorError
    ├── ConfigError                   bad conveyor.toml, home or URL settings
    ├── PipelineDefinitionError       the pipeline as written cannot be built
    │   ├── ParameterError            unknown parameter, wrong type
    │   ├── MissingInputError         a required input is not connected
    │   ├── UnknownOutputError        an output is used but never produced
    │   ├── TypeMismatchError         producer and consumer types do not fit
    │   └── CycleError                the graph has a cycle
    ├── PipelineLoadError             missing file, syntax error, unknown pipeline name
    ├── MaterializerError             no materializer for a type, or save/load failed
    ├── StoreError
    │   ├── MetadataStoreError        database unreachable, schema too new, ...
    │   ├── ArtifactStoreError        storage backend failed, artifact missing
    │   └── NotFoundError             no run / execution / artifact with that id
    └── RunError                      a pipeline run failed (exit code 1 in the CLI)

Messages name the object at fault, list valid choices where there are some, and stay short.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ArtifactStoreError",
    "ConfigError",
    "ConveyorError",
    "CycleError",
    "MaterializerError",
    "MetadataStoreError",
    "MissingInputError",
    "NotFoundError",
    "ParameterError",
    "PipelineDefinitionError",
    "PipelineLoadError",
    "RunError",
    "StoreError",
    "TypeMismatchError",
    "UnknownOutputError",
    "did_you_mean",
]


class ConveyorError(Exception):
    """Root of every error conveyor raises on purpose."""


class ConfigError(ConveyorError):
    """Configuration (flags, environment, conveyor.toml) is invalid."""


class PipelineDefinitionError(ConveyorError):
    """The pipeline, as written, cannot be turned into a valid graph."""


class ParameterError(PipelineDefinitionError):
    """A parameter is unknown, missing or of the wrong type."""


class MissingInputError(PipelineDefinitionError):
    """A component input is not connected to any producer."""


class UnknownOutputError(PipelineDefinitionError):
    """An output is consumed but no step produces it."""


class TypeMismatchError(PipelineDefinitionError):
    """A producer's output type does not fit the consumer's input type."""


class CycleError(PipelineDefinitionError):
    """The pipeline graph contains a cycle."""


class PipelineLoadError(ConveyorError):
    """A pipeline file or name could not be loaded."""


class MaterializerError(ConveyorError):
    """An object could not be stored as an artifact or loaded back."""


class StoreError(ConveyorError):
    """A store (metadata or artifacts) failed."""


class MetadataStoreError(StoreError):
    """The metadata database is unreachable or inconsistent."""


class ArtifactStoreError(StoreError):
    """The artifact storage backend failed or an artifact is missing."""


class NotFoundError(StoreError):
    """No run, execution or artifact has the given id."""


class RunError(ConveyorError):
    """A pipeline run ended in failure."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return a short hint naming the closest valid choice, or listing the valid ones.

    Example:
        >>> did_you_mean("lerning_rate", ["learning_rate", "epochs"])
        " (did you mean 'learning_rate'?)"
    """
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if not options:
        return " (there are none)"
    shown = ", ".join(repr(o) for o in options[:10])
    more = f", ... ({len(options) - 10} more)" if len(options) > 10 else ""
    return f" (valid: {shown}{more})"

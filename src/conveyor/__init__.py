"""conveyor: continuous-training ML pipelines.

Example:
    >>> from conveyor import component, pipeline
"""

from conveyor.core.artifacts import Artifact, Dataset, File, Folder, Metrics, Model
from conveyor.core.component import Component, component
from conveyor.core.context import StepContext, current_step
from conveyor.core.materializers import Materializer, register_materializer
from conveyor.core.pipeline import Pipeline, after, pipeline
from conveyor.exceptions import ConveyorError

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ``conveyor.run`` pulls in the runner and SQLAlchemy: import it only when asked for, so
    # that step worker processes and ``import conveyor`` stay light.
    if name == "run":
        from conveyor.api import run

        return run
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")


__all__ = [
    "Artifact",
    "Component",
    "ConveyorError",
    "Dataset",
    "File",
    "Folder",
    "Materializer",
    "Metrics",
    "Model",
    "Pipeline",
    "StepContext",
    "__version__",
    "after",
    "component",
    "current_step",
    "pipeline",
    "register_materializer",
    "run",
]

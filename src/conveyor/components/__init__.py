"""conveyor's standard components, written with the public API only (as a user would).

Import them from here or from their modules; each module is imported on first use, so
``import conveyor.components`` stays light::

    from conveyor.components import ingest, statistics

=================== ==================================== =====================================
component           module                               does
=================== ==================================== =====================================
``ingest``          :mod:`~.data_ingest`                 file/SQL source -> split Dataset
``ingest_table``    :mod:`~.data_ingest`                 DataFrame from a step -> split Dataset
``statistics``      :mod:`~.data_checks`                 Dataset -> statistics per split
``infer_schema``    :mod:`~.data_checks`                 statistics -> schema
``validate``        :mod:`~.data_checks`                 anomalies, drift, skew
``transform``       :mod:`~.model_transform`             fit preprocessing on train only
``tune``            :mod:`~.model_tune`                  search space -> best estimator
``train``           :mod:`~.model_train`                 Dataset -> model bundle
``evaluate``        :mod:`~.model_evaluate`              bundle vs production -> blessing
``explain``         :mod:`~.model_explain`               importance, PDP/ICE
``infra_validate``  :mod:`~.serving_check`               bundle served in a separate process
``register``        :mod:`~.registry`                    model -> registry version
=================== ==================================== =====================================

Component modules are named apart from their components (``model_train`` holds ``train``)
so that importing a module never shadows the component of the same name here.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "evaluate",
    "explain",
    "infer_schema",
    "infra_validate",
    "ingest",
    "ingest_table",
    "register",
    "statistics",
    "train",
    "transform",
    "tune",
    "validate",
]

_MODULE_OF = {
    "ingest": "data_ingest",
    "ingest_table": "data_ingest",
    "statistics": "data_checks",
    "infer_schema": "data_checks",
    "validate": "data_checks",
    "register": "registry",
    "infra_validate": "serving_check",
    "transform": "model_transform",
    "tune": "model_tune",
    "train": "model_train",
    "evaluate": "model_evaluate",
    "explain": "model_explain",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.components' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

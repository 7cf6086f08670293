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
``transform``       :mod:`~.transform`                   fit preprocessing on train only
``tune``            :mod:`~.tune`                        search space -> best estimator
``train``           :mod:`~.train`                       Dataset -> model bundle
``evaluate``        :mod:`~.evaluate`                    bundle vs production -> blessing
``explain``         :mod:`~.explain`                     importance, PDP/ICE
``register``        :mod:`~.registry`                    model -> registry version
=================== ==================================== =====================================
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "evaluate",
    "explain",
    "infer_schema",
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
    "transform": "transform",
    "tune": "tune",
    "train": "train",
    "evaluate": "evaluate",
    "explain": "explain",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.components' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

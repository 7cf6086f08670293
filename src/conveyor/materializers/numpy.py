"""numpy arrays as "Array" artifacts: one ``data.npy`` file, never pickled.

Object arrays are refused (they would need pickle); masked arrays too (``.npy`` has no
mask). Memory-mapped and other plain ``ndarray`` subclasses are stored as plain arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conveyor.core.materializers import Materializer
from conveyor.exceptions import MaterializerError

__all__ = ["NumpyMaterializer"]


class NumpyMaterializer(Materializer):
    """``numpy.ndarray`` <-> ``data.npy`` (``allow_pickle=False``).

    Example:
        >>> NumpyMaterializer().save(np.zeros((2, 3)), folder)
        {'shape': [2, 3], 'dtype': 'float64'}
    """

    python_types = ("numpy.ndarray",)
    artifact_type = "Array"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        if isinstance(obj, np.ma.MaskedArray):
            raise MaterializerError("cannot store a masked array: .npy has no mask (store both)")
        array = np.asarray(obj)
        if array.dtype.hasobject:
            raise MaterializerError(
                f"cannot store a numpy array of dtype {array.dtype}: object arrays need "
                "pickle, which conveyor never uses; convert it (e.g. .astype(str)) first"
            )
        np.save(folder / "data.npy", array, allow_pickle=False)
        return {"shape": list(array.shape), "dtype": str(array.dtype)}

    def load(self, folder: Path, python_type: type) -> Any:
        path = Path(folder) / "data.npy"
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise MaterializerError(f"cannot read array {path}: {exc}") from exc

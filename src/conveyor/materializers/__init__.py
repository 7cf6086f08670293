"""Materializers for ML libraries, imported only when a value of their type is stored.

``conveyor.core`` registers them by type *name*, so nothing here (nor pandas, pyarrow,
numpy, scikit-learn or skops) is imported until it is used:

============================  ============  =============================================
Python type                   artifact      payload
============================  ============  =============================================
``pandas.DataFrame``          ``Dataset``   ``data.parquet`` (index kept)
``pyarrow.Table``             ``Dataset``   ``data.parquet``
``numpy.ndarray``             ``Array``     ``data.npy`` (no pickles)
``sklearn.base.BaseEstimator`` ``Model``    ``model.skops`` (skops, trusted types only)
============================  ============  =============================================

pandas and Arrow read each other's Datasets, including folders of several Parquet files
(hive-style ``key=value/`` sub-folders become columns).
"""

__all__: list[str] = []

"""Modeling: training, model bundles and flavours, and evaluation against production.

This is the ML-library layer: it may use numpy, pandas and scikit-learn, and builds on the
engine's public API only. Importing the package imports nothing; use the modules:

- evaluation (pure functions, no I/O; see ``docs/evaluation.md``):
  :mod:`~conveyor.modeling.metrics` (the metric registry and direction table),
  :mod:`~conveyor.modeling.slicing` (slice specs, :func:`compute_sliced_metrics`),
  :mod:`~conveyor.modeling.fairness` (per-group metrics and disparities),
  :mod:`~conveyor.modeling.thresholds` (threshold specs, :func:`bless`),
  :mod:`~conveyor.modeling.evaluation_model` (the ``EvaluationResult`` and ``Blessing`` models);
- training and bundles: :mod:`~conveyor.modeling.training`, :mod:`~conveyor.modeling.bundle`
  and the flavour modules (see ``docs/model-bundle.md``).
"""

# -- training, bundles and flavours: re-exported lazily, so importing the package stays free --

import importlib as _importlib

_LAZY_EXPORTS = {
    **dict.fromkeys(("LoadedBundle", "ModelBundle", "load_bundle", "save_bundle"), "bundle"),
    "verify_bundle": "bundle",
    "BundleManifest": "bundle_manifest",
    **dict.fromkeys(("ColumnSpec", "Signature", "infer_signature"), "bundle_signature"),
    **dict.fromkeys(
        (
            "BundleError",
            "BundleIntegrityError",
            "FlavourError",
            "SignatureError",
            "TrainingError",
            "UnsafeBundleError",
        ),
        "bundle_errors",
    ),
    **dict.fromkeys(("Flavour", "detect_flavour", "get_flavour", "register_flavour"), "flavours"),
    **dict.fromkeys(("EstimatorSpec", "TrainContext", "TrainResult", "fit_model"), "training"),
    "capture_environment": "environment",
    # evaluation: metrics, slices, fairness, thresholds and blessing
    **dict.fromkeys(("METRICS", "EvaluationError", "compute_metrics"), "metrics"),
    **dict.fromkeys(("SliceSpec", "compute_sliced_metrics", "parse_slices"), "slicing"),
    "compute_fairness": "fairness",
    **dict.fromkeys(("Threshold", "bless", "validate_thresholds"), "thresholds"),
    **dict.fromkeys(
        ("Blessing", "EvaluationResult", "FairnessResult", "Reason", "SliceMetrics"),
        "evaluation_model",
    ),
}

__all__ = sorted(_LAZY_EXPORTS)


def __getattr__(name: str) -> object:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.modeling' has no attribute {name!r}")
    return getattr(_importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

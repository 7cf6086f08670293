"""The census demo pipeline: data arrives in spans, is described, checked and gated.

    ingest (latest span) ──► statistics ──► infer_schema ──► validate ◄── ingest (previous span)

``validate`` compares the new span with the schema and with the previous span; when a
feature drifts beyond its threshold it fails, and nothing after it runs.

Run one span at a time, as if it had just arrived::

    python examples/census/generate.py data/census --spans 4 --drift 3:covariate=1.0
    conveyor run examples/census/pipeline.py -p source=data/census -p until_span=3
"""

from __future__ import annotations

from conveyor import pipeline
from conveyor.components import infer_schema, ingest, statistics, validate

LABEL = "income"


@pipeline
def census(source: str = "data/census", until_span: int = 1, drift_threshold: float = 0.1) -> None:
    """Validate the newest span (``until_span``) against its schema and the span before."""
    current = ingest(source, name="census", until_span=until_span, stratify_by=LABEL)
    previous = None
    if until_span > 1:
        previous = ingest.configure(name="ingest_previous")(
            source, name="census", until_span=until_span, span_offset=1, stratify_by=LABEL
        )
    stats = statistics(current, label=LABEL)
    schema = infer_schema(stats, label=LABEL, drift_threshold=drift_threshold)
    validate(stats, schema, current, previous=previous)

"""``/metrics`` summed over every worker process (``conveyor serve --workers N``).

Behind one port, a scrape reaches whichever worker accepts it; per-worker counters would
jump between workers and make ``rate()`` meaningless. In prometheus_client's multi-process
mode (``PROMETHEUS_MULTIPROC_DIR`` set before the workers start; ``serve_workers`` does it)
every counter and histogram is also written to a memory-mapped file per process, and
:func:`aggregated_endpoint` answers with their sum over all workers, live and exited.

The gauges of :class:`~conveyor.serving.metrics.ServingMetrics` (models loaded, log records
pending or dropped) are read by functions at scrape time, which the files cannot hold: they
are answered from the worker that takes the scrape (their help text says so), and the
files' copies of them (always zero) are left out.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from conveyor.serving.auth import Handler
from conveyor.serving.metrics import ServingMetrics

__all__ = ["MULTIPROC_ENV", "aggregated_endpoint"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's variable naming the folder of the per-process metric files."""


class _AllWorkers:
    """Counters and histograms of every worker, gauges of this one."""

    def __init__(self, local: CollectorRegistry, path: str) -> None:
        self.local = local
        self.files = MultiProcessCollector(None, path=path)

    def collect(self) -> Iterator[Metric]:
        for family in self.files.collect():
            if family.type != "gauge":
                yield family
        for family in self.local.collect():
            if family.type == "gauge":
                yield family


def aggregated_endpoint(local: ServingMetrics, path: str) -> Handler:
    """``GET /metrics`` over the metric files in ``path`` plus this worker's gauges.

    Raises:
        ValueError: ``path`` is not a folder.
    """
    registry = CollectorRegistry()
    registry.register(_AllWorkers(local.registry, path))

    async def metrics(request: Request) -> Response:
        """``GET /metrics``: counters and histograms summed over every worker."""
        return Response(generate_latest(registry), 200, media_type=CONTENT_TYPE_LATEST)

    return metrics

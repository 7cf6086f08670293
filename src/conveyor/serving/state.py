"""What the serving endpoints share: :class:`ServingState`, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.inference import Inference
from conveyor.serving.metrics import ServingMetrics
from conveyor.serving.models import ServedModels
from conveyor.serving.prediction_log import PredictionLog
from conveyor.serving.router import Decision

__all__ = ["ServingState"]


@dataclass
class ServingState:
    """The served models, the prediction path, the logs and the settings of one app.

    Attributes:
        models: Routing, the model cache and metadata.
        log: The prediction log.
        feedback: The feedback store.
        max_body_bytes: Largest request body accepted (bigger ones are a 413).
        metrics: The app's Prometheus metrics.
        inference: Check, predict, log and shadow (:mod:`conveyor.serving.inference`).
        sticky_header: The request header read as the sticky routing key.
        ready: True between startup (preloading done) and shutdown.
    """

    models: ServedModels
    log: PredictionLog
    feedback: FeedbackStore
    max_body_bytes: int
    metrics: ServingMetrics
    inference: Inference
    sticky_header: str
    ready: bool = False

    def decide(self, request: Request, model: str, ref: str | None) -> Decision:
        """Route ``model`` at ``ref`` (alias, version or None), sticky on the request's key.

        Raises:
            ProtocolError: 404 naming the unknown model, alias or version.
        """
        sticky = request.headers.get(self.sticky_header) or None
        return self.models.resolve(model, ref, sticky_key=sticky)

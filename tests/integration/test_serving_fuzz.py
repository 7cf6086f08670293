"""Fuzz every REST operation of ``/openapi.json`` with schemathesis: no request gets a 5xx.

The server is real (uvicorn on loopback) and serves a classifier (``census``) and a
regression model (``price``). The document is the server's own ``/openapi.json``; only its
path parameters are narrowed for the fuzzer, so most requests reach a served model and its
input checks instead of a 404 (``model`` is a served name or any string, ``version`` a
registered version or any number, ``label`` an alias or any string). Bodies are generated
from the document's schemas, and schemathesis' coverage phase adds the edge cases (missing
and mistyped fields, empty values). The main check is ``not_a_server_error`` (a client's
mistake must be a 4xx); the conformance checks also hold every answer to the document:
documented status, content type, headers and body schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor import __version__  # noqa: E402
from conveyor.config import load_settings  # noqa: E402
from conveyor.serving.openapi import openapi_document  # noqa: E402
from conveyor.serving.server import BackgroundServer, parse_size  # noqa: E402
from conveyor.store.workspace import Workspace  # noqa: E402
from serving_bundles import register_model  # noqa: E402
from serving_support import free_port, register_production  # noqa: E402

pytestmark = pytest.mark.slow


def _register_price(ws: Workspace, root: Path) -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(size=60), "n": rng.integers(0, 10, 60)})
    model = LinearRegression().fit(frame, 2.0 * frame["x"] + frame["n"])
    register_model(ws, "price", root / "price", model, frame, task="regression", alias="production")


_CENSUS_ROW = {
    "type": "object",
    "properties": {"x": {"type": "number"}, "n": {"type": "integer"}, "city": {"type": "string"}},
}


def _narrowed(document: dict[str, Any]) -> dict[str, Any]:
    """The document leaning to served names and census-like rows (for depth, not width)."""
    schemas = document["components"]["schemas"]
    rows = schemas["TFExamplesRequest"]["properties"]["examples"]
    rows["items"] = {"anyOf": [_CENSUS_ROW, rows["items"]]}
    instances = schemas["TFPredictRequest"]["properties"]["instances"]
    instances["items"] = {"anyOf": [_CENSUS_ROW, {}]}
    parameters = document["components"]["parameters"]
    parameters["model"]["schema"] = {"anyOf": [{"enum": ["census", "price"]}, {"type": "string"}]}
    parameters["version"]["schema"] = {"anyOf": [{"enum": [1]}, {"type": "integer", "minimum": 1}]}
    parameters["label"]["schema"] = {"anyOf": [{"enum": ["production"]}, {"type": "string"}]}
    return document


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from conveyor.serving.app import create_app

    root = tmp_path_factory.mktemp("fuzz")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        register_production(ws, root)
        _register_price(ws, root)
        app = create_app(ws, memory_budget_bytes=parse_size("256MB"), reload_interval_s=None)
        app.state.serving.max_body_bytes = 256 << 10
        with BackgroundServer(app, port=free_port()) as server:
            yield server.url
    finally:
        ws.close()


CHECKS = [
    not_a_server_error,  # the point: a client's mistake is never a 5xx
    # and the hand-written document tells the truth about every answer:
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# Built from the document the server serves (checked below) at import time, so that pytest
# collects one test per operation.
schema = schemathesis.openapi.from_dict(_narrowed(openapi_document(__version__)))


def test_the_server_serves_this_document(base_url: str) -> None:
    served = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    assert served == openapi_document(__version__)
    assert len([op for path in served["paths"].values() for op in path]) == 27


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_request_is_a_server_error(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)

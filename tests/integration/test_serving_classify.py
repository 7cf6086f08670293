""":classify and :regress (TF Serving REST) end to end on a real uvicorn server.

``census`` is a binary classifier (one-hot city + logistic regression, classes 0/1) and
``price`` a regression model (linear regression on the same three features); answers are
compared with the bundles' offline predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.config import load_settings
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.registry import ModelRegistry
from conveyor.serving.app import ServingState, create_app
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_bundles import register_model
from serving_support import free_port, register_production

ROWS = pd.DataFrame({"x": [0.5, -1.25, 2.0], "n": [1, 7, 3], "city": ["Lyon", "Paris", "Nice"]})
EXAMPLES = ROWS.to_dict(orient="records")


@dataclass
class Served:
    url: str
    census: LoadedBundle
    price: LoadedBundle
    state: ServingState
    artifact_url: str


def _register_price(ws: Workspace, root: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=120),
            "n": rng.integers(0, 10, 120),
            "city": rng.choice(["Lyon", "Paris", "Nice"], 120),
        }
    )
    y = 3.0 * frame["x"] + frame["n"] + (frame["city"] == "Paris") * 5.0
    prep = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    ).fit(frame)
    model = LinearRegression().fit(prep.transform(frame), y)
    folder = root / "price"
    register_model(
        ws, "price", folder, model, frame, task="regression", alias="production", preprocessing=prep
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("classify")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        census = load_bundle(register_production(ws, root))
        _register_price(ws, root)
        price = load_bundle(ModelRegistry(ws).load_bundle_path("price", "production"))
        app = create_app(
            ws,
            memory_budget_bytes=parse_size("256MB"),
            flush_interval_s=0.2,
            reload_interval_s=None,
        )
        with BackgroundServer(app, port=free_port()) as server:
            yield Served(server.url, census, price, app.state.serving, ws.settings.artifact_url)
    finally:
        ws.close()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as http:
        yield http


def _pairs_to_scores(result: list[list[list[Any]]]) -> tuple[list[list[str]], np.ndarray]:
    labels = [[pair[0] for pair in example] for example in result]
    scores = np.array([[pair[1] for pair in example] for example in result])
    return labels, scores


def test_classify_answers_label_score_pairs(client: httpx.Client, served: Served) -> None:
    response = client.post(
        "/v1/models/census:classify",
        json={"examples": EXAMPLES},
        headers={"X-Request-Id": "classify-1"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["X-Model-Route"] == "production"
    assert response.headers["X-Request-Id"] == "classify-1"
    labels, scores = _pairs_to_scores(response.json()["results"])
    classes = [str(c) for c in served.census.signature.classes or ()]
    assert classes == ["0", "1"] and labels == [classes] * len(EXAMPLES)
    np.testing.assert_allclose(scores, served.census.predict_proba(ROWS))


def test_context_is_merged_into_every_example(client: httpx.Client, served: Served) -> None:
    body = {
        "signature_name": "tensorflow/serving/classify",
        "context": {"city": "Lyon", "n": 4},
        "examples": [{"x": 0.5}, {"x": -2.0}],
    }
    response = client.post("/v1/models/census/labels/production:classify", json=body)
    assert response.status_code == 200, response.text
    expected = pd.DataFrame({"x": [0.5, -2.0], "n": [4, 4], "city": ["Lyon", "Lyon"]})
    _, scores = _pairs_to_scores(response.json()["results"])
    np.testing.assert_allclose(scores, served.census.predict_proba(expected))


def test_regress_answers_one_number_per_example(client: httpx.Client, served: Served) -> None:
    response = client.post(
        "/v1/models/price/versions/1:regress",
        json={"signature_name": "serving_default", "examples": EXAMPLES},
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Route"] == "v1"
    np.testing.assert_allclose(response.json()["results"], served.price.predict(ROWS))
    with_context = client.post(
        "/v1/models/price:regress",
        json={"context": {"n": 2, "city": "Nice"}, "examples": [{"x": 1.0}]},
    )
    expected = served.price.predict(pd.DataFrame({"x": [1.0], "n": [2], "city": ["Nice"]}))
    np.testing.assert_allclose(with_context.json()["results"], expected)


@pytest.mark.parametrize(
    ("path", "task", "hint"),
    [
        ("/v1/models/price:classify", "regression", ":regress or :predict"),
        ("/v1/models/census:regress", "binary", ":classify or :predict"),
    ],
)
def test_verb_must_fit_the_task(client: httpx.Client, path: str, task: str, hint: str) -> None:
    response = client.post(path, json={"examples": EXAMPLES})
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert f"is a {task} model" in message and hint in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"examples": [{"x": 1.0, "city": "Lyon"}]}, "'n'"),  # missing feature
        ({"examples": [{"x": 1.0, "n": 1, "city": "Lyon", "age": 3}]}, "'age'"),  # unknown
        ({"examples": [{"x": "high", "n": 1, "city": "Lyon"}]}, "'x'"),  # wrong type
        ({"examples": [{"x": 1.0, "n": 1, "city": "Lyon"}, {"x": 2.0, "city": "Nice"}]}, "'n'"),
        ({"context": {"x": 1.0}, "examples": [{"x": 2.0, "n": 1, "city": "Lyon"}]}, "'x'"),
        ({"examples": [{"x": [1.0, 2.0], "n": 1, "city": "Lyon"}]}, "'x'"),  # a list value
        ({"examples": []}, "'examples'"),
        ({"instances": EXAMPLES}, "'examples'"),
        ({"examples": EXAMPLES, "signature_name": "other"}, "'signature_name'"),
        ({"examples": EXAMPLES, "context": [1]}, "'context'"),
    ],
)
def test_bad_examples_are_400_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    for verb in ("census:classify", "price:regress"):
        response = client.post(f"/v1/models/{verb}", json=body)
        assert response.status_code == 400, response.text
        assert field in response.json()["error"], response.json()


def test_predictions_are_logged_and_counted(client: httpx.Client, served: Served) -> None:
    ids = {"census:classify": "log-classify", "price:regress": "log-regress"}
    for path, request_id in ids.items():
        response = client.post(
            f"/v1/models/{path}", json={"examples": EXAMPLES}, headers={"X-Request-Id": request_id}
        )
        assert response.status_code == 200, response.text
    served.state.log.flush()
    root = served.artifact_url.rstrip("/")
    rows = duckdb.sql(
        f"SELECT request_id, model, version, route, protocol, outputs FROM read_parquet("
        f"'{root}/predictions/**/*.parquet', hive_partitioning=true) "
        f"WHERE request_id IN ('log-classify', 'log-regress') ORDER BY request_id"
    ).fetchall()
    assert [r[:5] for r in rows] == [
        ("log-classify", "census", "1", "production", "v1"),
        ("log-regress", "price", "1", "production", "v1"),
    ]
    assert '"probabilities"' in rows[0][5] and '"prediction"' in rows[1][5]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }
    labels = (
        ("code", "200"),
        ("model", "price"),
        ("protocol", "v1"),
        ("route", "production"),
        ("version", "1"),
    )
    assert samples[("conveyor_requests_total", labels)] >= 2

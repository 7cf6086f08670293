"""Infra validation with a real ``conveyor serve`` child process on 127.0.0.1.

A good model passes over both protocols; a model with an input the JSON protocols cannot
carry (a datetime) is refused by the server and fails, naming the column; a server that
cannot bind its port fails with its own output; in a pipeline, a failure stops ``register``.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

import conveyor
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.modeling.bundle import load_bundle, save_bundle
from conveyor.registry import ModelRegistry
from conveyor.serving.canary_requests import canary_rows
from conveyor.serving.infra_validation import (
    InfraValidation,
    InfraValidationError,
    validate_serving,
)
from conveyor.serving.server_process import free_port
from conveyor.store.metadata.records import ExecutionStatus, RunStatus
from conveyor.store.workspace import Workspace

pytestmark = pytest.mark.slow


def _frame(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "n": rng.integers(0, 10, n),
            "city": rng.choice(["Lyon", "Paris", "Nice"], n),
            "signed_up": pd.date_range("2024-01-01", periods=n, freq="D"),
        }
    )
    label = ((frame["x"] + (frame["city"] == "Paris")) > 0.5).map({True: ">50K", False: "<=50K"})
    return frame, label


def _bundle(folder: Path, with_date: bool = False) -> Path:
    """A one-hot + logistic regression bundle; ``with_date`` keeps a datetime column in its
    signature that the preprocessing drops (offline the model takes it, JSON cannot)."""
    frame, label = _frame()
    if not with_date:
        frame = frame.drop(columns="signed_up")
    prep = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("num", "passthrough", ["x", "n"]),
        ]
    ).fit(frame)
    model = LogisticRegression().fit(prep.transform(frame), label)
    save_bundle(folder, model, signature=frame, task="binary", preprocessing=prep)
    return folder


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary folders of the validation go under the test's own folder."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_good_model_passes_and_leaves_nothing_behind(tmp_path: Path, tmp_root: Path) -> None:
    bundle = _bundle(tmp_path / "bundle")
    examples, _ = _frame(60, seed=1)  # 60 rows: the last of 8 requests has 4 rows
    port = free_port()
    result = validate_serving(bundle, examples, model_name="census", requests=8, port=port)
    assert result.blessed, result.reasons
    assert (result.requests, result.rows, result.failed_requests) == (8, 60, 0)
    assert result.mismatched_rows == 0 and result.mismatches == []
    assert result.server_version == conveyor.__version__
    assert result.latency_ms_p50 is not None and result.latency_ms_p99 is not None
    assert 0 < result.latency_ms_p50 <= result.latency_ms_p99
    assert result.startup_s is not None and result.startup_s > 0
    assert not _listening(port), "the server was stopped"
    assert list(tmp_root.iterdir()) == [], "the throw-away workspace was deleted"


def test_an_input_the_server_refuses_fails_naming_it(tmp_path: Path, tmp_root: Path) -> None:
    bundle = _bundle(tmp_path / "bundle", with_date=True)
    examples, _ = _frame(40, seed=2)
    result = validate_serving(
        bundle, examples, requests=3, rows_per_request=5, protocol="v1", max_p99_ms=0.001
    )
    assert not result.blessed and result.protocol == "v1"
    assert (result.requests, result.failed_requests) == (3, 3)
    assert result.failures[0].status == 400
    assert result.failures[0].rows == [0, 1, 2, 3, 4]
    assert "'signed_up': expected datetime, got string" in result.failures[0].error
    refused, slow = result.reasons
    assert refused.startswith("3 of 3 canary requests failed; the first (request 0, rows 0-4)")
    assert slow == f"latency p99 {result.latency_ms_p99:.1f} ms is over the limit of 0.001 ms"
    assert list(tmp_root.iterdir()) == []


def test_a_server_that_cannot_start_fails_with_its_output(tmp_path: Path, tmp_root: Path) -> None:
    bundle = _bundle(tmp_path / "bundle")
    examples, _ = _frame(16)
    with socket.socket() as taken:  # another program holds the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = validate_serving(bundle, examples, requests=2, port=port, timeout_s=120)
    assert not result.blessed and result.requests == 0
    (reason,) = result.reasons
    assert reason.startswith("the server did not start: `conveyor serve` exited with code")
    assert "address already in use" in reason.lower()
    assert list(tmp_root.iterdir()) == []


def test_missing_text_sent_as_null_is_refused(tmp_path: Path, tmp_root: Path) -> None:
    frame, label = _frame()
    frame = frame.drop(columns="signed_up").astype({"city": object})
    frame.loc[::3, "city"] = None  # trained with missing cities: the model takes them
    prep = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    ).fit(frame)
    model = LogisticRegression().fit(prep.transform(frame), label)
    save_bundle(tmp_path / "bundle", model, signature=frame, task="binary", preprocessing=prep)

    sent = validate_serving(
        tmp_path / "bundle", frame, requests=1, rows_per_request=4, skip_missing=False
    )
    assert not sent.blessed and sent.rows_skipped == 0
    assert "datatype BYTES needs strings in 'data', got None" in sent.reasons[0]
    # by default such rows are left out: no protocol can carry a missing text value
    assert canary_rows(frame, load_bundle(tmp_path / "bundle").signature, 8)[1] == 4


def test_bad_settings_and_examples_are_refused_before_serving(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundle")
    examples, _ = _frame(10)
    with pytest.raises(InfraValidationError, match="requests must be at least 1, got 0"):
        validate_serving(bundle, examples, requests=0)
    with pytest.raises(InfraValidationError, match=r"protocol must be one of \['v2', 'v1'\]"):
        validate_serving(bundle, examples, protocol="grpc")  # type: ignore[arg-type]
    with pytest.raises(InfraValidationError, match="memory_budget: '2 parsecs' is not a size"):
        validate_serving(bundle, examples, memory_budget="2 parsecs")
    with pytest.raises(InfraValidationError, match="missing column 'city'"):
        validate_serving(bundle, examples.drop(columns="city"))


# -- in a pipeline -------------------------------------------------------------------------

PIPELINE = """
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression

from conveyor import Dataset, after, component, pipeline
from conveyor.components.registry import register
from conveyor.components.serving_check import infra_validate
from conveyor.modeling.bundle import ModelBundle, save_bundle


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(size=n),
        "signed_up": pd.date_range("2024-01-01", periods=n, freq="D"),
    })


@component
def make_data() -> Dataset:
    root = Path(tempfile.mkdtemp()) / "data"
    for name, seed in (("train", 0), ("eval", 1)):
        (root / f"split={name}").mkdir(parents=True)
        _frame(40, seed).to_parquet(root / f"split={name}" / "part-0.parquet", index=False)
    return Dataset.from_path(root)


@component
def fit(with_date: bool = False) -> ModelBundle:
    frame = _frame(100, 0)
    if not with_date:
        frame = frame.drop(columns="signed_up")
    prep = ColumnTransformer([("x", "passthrough", ["x"])], remainder="drop").fit(frame)
    model = LogisticRegression().fit(prep.transform(frame), (frame["x"] > 0).astype(int))
    folder = Path(tempfile.mkdtemp()) / "bundle"
    save_bundle(folder, model, signature=frame, task="binary", preprocessing=prep)
    return ModelBundle.from_path(folder)


@pipeline
def training(with_date: bool = False) -> None:
    data = make_data()
    model = fit(with_date=with_date)
    checked = infra_validate(model, data, model_name="census", requests=3)
    with after(checked):
        register(model, name="census", require_blessing=False, alias="production")
"""


def test_in_a_pipeline_a_failure_stops_register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "training.py").write_text(PIPELINE)
    training = load_pipeline(f"{tmp_path / 'training.py'}:training", reload=True)
    home = tmp_path / "home"

    passed = conveyor.run(training, home=home, max_workers=2)
    assert passed.status == RunStatus.SUCCEEDED, passed.error
    failed = conveyor.run(training, home=home, max_workers=2, with_date=True)
    assert failed.status == RunStatus.FAILED
    assert failed.step_status["infra_validate"] == ExecutionStatus.FAILED
    assert failed.step_status["register"] == ExecutionStatus.SKIPPED

    workspace = Workspace.open(load_settings(home=home), recover=False)
    try:
        steps = {e.step_name: e for e in workspace.metadata.list_executions(failed.run_id)}
        error = steps["infra_validate"].error or ""
        assert "InfraValidationFailed" in error
        assert "infra validation of 'census' failed; the model must not be deployed" in error
        assert "'signed_up': expected datetime, got string" in error
        registry = ModelRegistry(workspace)
        assert [v.version for v in registry.list("census")] == [1], "registry unchanged"
        assert registry.aliases("census") == {"production": 1}
        executions = {e.step_name: e for e in workspace.metadata.list_executions(passed.run_id)}
        output = workspace.metadata.execution_outputs(executions["infra_validate"].id)["output"]
        assert output.type_name == "InfraValidation"
        assert output.properties["blessed"] is True and output.properties["requests"] == 3
        record = InfraValidation.model_validate_json(
            (Path(output.uri) / "infra_validation.json").read_text()
        )
        assert record.model_name == "census" and record.rows == 24
    finally:
        workspace.close()
    assert not (home / "artifacts" / "predictions").exists(), "canaries stay out of the log"

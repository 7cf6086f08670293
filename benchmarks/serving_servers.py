"""The three servers of ``benchmarks/serving.py``, each started as a subprocess on loopback.

- **conveyor**: the model saved as a bundle, recorded as a run's output and registered as
  ``bench`` under the ``production`` alias in a fresh workspace, then ``conveyor serve`` (one
  worker; prediction log, input validation, routing, metrics and the access log on: the
  defaults). Ready when ``/v2/health/ready`` answers 200.
- **MLflow**: the same fitted model saved with ``mlflow.sklearn.save_model`` (with an inferred
  signature, so inputs are checked), then ``mlflow models serve --env-manager local -w 1``,
  run twice: on uvicorn's plain stack (what ``pip install mlflow`` gives) and on uvloop +
  httptools.
- **FastAPI**: a hand-written app that unpickles the model and predicts, nothing else (no
  DataFrame, no logging, no validation beyond pydantic's ``list[list[float]]``): the floor,
  run twice: on uvicorn's plain stack (asyncio + h11) and on uvloop + httptools.

MLflow and FastAPI run from their own virtual environment (``benchmarks/.venv-mlflow``,
created from ``requirements-mlflow.txt`` when missing, with conveyor's scikit-learn version
pinned so the pickle loads), never from conveyor's.

Each contender knows its prediction URL, how to encode rows as its request body and how to
read the labels back from its answer (to check the three agree before measuring).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conveyor.serving.server_process import free_port

HERE = Path(__file__).resolve().parent
MLFLOW_VENV = HERE / ".venv-mlflow"
MLFLOW_REQUIREMENTS = HERE / "requirements-mlflow.txt"
MODEL_NAME = "bench"

FASTAPI_APP = textwrap.dedent(
    """
    import os
    import pickle
    import warnings

    import numpy as np
    from fastapi import FastAPI
    from pydantic import BaseModel

    # the model was fitted on a DataFrame; the floor predicts on a bare array
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    with open(os.environ["BENCH_MODEL_PICKLE"], "rb") as handle:
        model = pickle.load(handle)


    class Rows(BaseModel):
        instances: list[list[float]]


    app = FastAPI()


    @app.get("/health")
    def health() -> dict:
        return {"ok": True}


    @app.post("/predict")
    def predict(rows: Rows) -> dict:
        return {"predictions": model.predict(np.asarray(rows.instances)).tolist()}
    """
)

MLFLOW_SAVE = textwrap.dedent(
    """
    import pickle, sys, warnings
    warnings.filterwarnings("ignore")
    import pandas as pd
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with open(sys.argv[1], "rb") as handle:
        model = pickle.load(handle)
    sample = pd.read_json(sys.argv[2], orient="split")
    signature = infer_signature(sample, model.predict(sample))
    mlflow.sklearn.save_model(model, sys.argv[3], signature=signature)
    """
)


class ServerError(RuntimeError):
    """A server could not be set up or did not become ready."""


@dataclass(frozen=True)
class Contender:
    """A running server: where to POST, how to encode rows, how to read labels back."""

    name: str
    url: str
    encode: Callable[[np.ndarray, list[str]], bytes]
    labels: Callable[[bytes], list[int]]


def post(url: str, body: bytes, timeout: float = 30.0) -> bytes:
    """POST a JSON body; the answer's bytes (an HTTP error raises ServerError)."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        raise ServerError(f"POST {url}: {exc.code} {exc.read()[:300]!r}") from exc


# -- request bodies -------------------------------------------------------------------------


def _rows(rows: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in rows]


def tf_instances(rows: np.ndarray, columns: list[str]) -> bytes:
    """TF Serving row format: ``{"instances": [{"f0": ..., ...}, ...]}``."""
    instances = [dict(zip(columns, row, strict=True)) for row in _rows(rows)]
    return json.dumps({"instances": instances}).encode()


def v2_inputs(rows: np.ndarray, columns: list[str]) -> bytes:
    """Open Inference Protocol JSON: one FP64 tensor of shape [rows] per column."""
    inputs = [
        {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
        for i, name in enumerate(columns)
    ]
    return json.dumps({"inputs": inputs}).encode()


def dataframe_split(rows: np.ndarray, columns: list[str]) -> bytes:
    """MLflow's pandas split format: ``{"dataframe_split": {"columns", "data"}}``."""
    return json.dumps({"dataframe_split": {"columns": columns, "data": _rows(rows)}}).encode()


def bare_instances(rows: np.ndarray, columns: list[str]) -> bytes:
    """The FastAPI floor's format: ``{"instances": [[...], ...]}``."""
    return json.dumps({"instances": _rows(rows)}).encode()


def _tf_labels(answer: bytes) -> list[int]:
    return [int(p["label"]) for p in json.loads(answer)["predictions"]]


def _v2_labels(answer: bytes) -> list[int]:
    outputs = {o["name"]: o for o in json.loads(answer)["outputs"]}
    return [int(v) for v in outputs["label"]["data"]]


def _plain_labels(answer: bytes) -> list[int]:
    return [int(v) for v in json.loads(answer)["predictions"]]


# -- processes ------------------------------------------------------------------------------


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def _process(
    name: str, command: list[str], env: dict[str, str], ready_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends (SIGINT, then SIGKILL after 20 s)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120.0
        while not _ready(ready_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-15:]
                raise ServerError(f"{name} did not become ready:\n" + "\n".join(tail))
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # graceful: conveyor flushes its prediction log
            try:
                proc.wait(20.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- conveyor -------------------------------------------------------------------------------


def register_conveyor(home: Path, model: Any, frame: pd.DataFrame) -> None:
    """Save ``model`` as a bundle in a workspace at ``home`` and register it as ``bench``."""
    from conveyor.config import load_settings
    from conveyor.modeling.bundle import save_bundle
    from conveyor.registry import ModelRegistry
    from conveyor.registry.recorded_bundle import record_bundle
    from conveyor.store.workspace import Workspace

    ws = Workspace.open(load_settings(home=home))
    try:
        folder = home.parent / "bundle"
        save_bundle(folder, model, signature=frame, task="binary")
        recorded = record_bundle(ws, folder, "train")  # the registry takes what a run produced
        ModelRegistry(ws).register(
            MODEL_NAME, recorded.artifact_id, require_blessing=False, alias="production"
        )
    finally:
        ws.close()


def prediction_log_rows(home: Path) -> int:
    """Predictions the conveyor server wrote to its log (read after it stopped)."""
    from conveyor.config import load_settings
    from conveyor.serving.prediction_log import connect, prediction_log_url

    root = prediction_log_url(load_settings(home=home).artifact_url)
    con = connect(root)
    try:
        row = con.execute("SELECT count(*) FROM predictions").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def conveyor_server(
    workdir: Path, model: Any, frame: pd.DataFrame
) -> Iterator[tuple[Contender, Contender]]:
    """``conveyor serve`` on a free port: the TF Serving and the V2 contenders."""
    home = workdir / "conveyor" / "home"
    home.mkdir(parents=True)
    register_conveyor(home, model, frame)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CONVEYOR_HOME": str(home)}
    command = [sys.executable, "-m", "conveyor", "serve", "--port", str(port)]
    with _process("conveyor", command, env, f"{base}/v2/health/ready", workdir / "conveyor.log"):
        yield (
            Contender(
                "conveyor", f"{base}/v1/models/{MODEL_NAME}:predict", tf_instances, _tf_labels
            ),
            Contender(
                "conveyor (V2)", f"{base}/v2/models/{MODEL_NAME}/infer", v2_inputs, _v2_labels
            ),
        )


# -- MLflow and the FastAPI floor -----------------------------------------------------------


def mlflow_python() -> Path:
    """The benchmark venv's interpreter, creating the venv when needed.

    Raises:
        ServerError: The venv could not be created or the packages installed.
    """
    import sklearn

    python = MLFLOW_VENV / "bin" / "python"
    probe = [str(python), "-c", "import mlflow, fastapi, uvicorn, uvloop, httptools, sklearn"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing MLflow and FastAPI into {MLFLOW_VENV} (-r {MLFLOW_REQUIREMENTS.name}) ...")
    try:
        if not python.exists():
            venv.create(MLFLOW_VENV, with_pip=True)
        pin = f"scikit-learn=={sklearn.__version__}"
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(MLFLOW_REQUIREMENTS), pin],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        lines = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines()
        raise ServerError(
            f"MLflow could not be installed into {MLFLOW_VENV}: {lines[-1] if lines else exc}"
        ) from exc
    return python


def _pickle(workdir: Path, model: Any) -> Path:
    path = workdir / "model.pkl"
    if not path.exists():
        path.write_bytes(pickle.dumps(model))
    return path


MLFLOW = "MLflow"
MLFLOW_FAST = "MLflow, uvloop"


def _save_mlflow_model(python: Path, workdir: Path, model: Any, frame: pd.DataFrame) -> Path:
    saved = workdir / "mlflow-model"
    if saved.exists():
        return saved
    sample = workdir / "sample.json"
    frame.head(100).to_json(sample, orient="split")
    proc = subprocess.run(
        [str(python), "-c", MLFLOW_SAVE, str(_pickle(workdir, model)), str(sample), str(saved)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ServerError(f"saving the MLflow model failed: {proc.stderr.strip()[-500:]}")
    return saved


@contextlib.contextmanager
def mlflow_server(
    workdir: Path, model: Any, frame: pd.DataFrame, *, fast_http: bool
) -> Iterator[Contender]:
    """``mlflow models serve --env-manager local -w 1`` over the same fitted model: on
    asyncio + h11 (what ``pip install mlflow`` gives: plain uvicorn) or on uvloop + httptools
    (uvicorn reads its options from ``UVICORN_*`` variables; MLflow starts it by name)."""
    python = mlflow_python()
    saved = _save_mlflow_model(python, workdir, model, frame)
    port = free_port()
    mlflow = str(python.parent / "mlflow")
    command = [mlflow, "models", "serve", "-m", str(saved), "-p", str(port)]
    command += ["-h", "127.0.0.1", "--env-manager", "local", "-w", "1"]
    loop, http = ("uvloop", "httptools") if fast_http else ("asyncio", "h11")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": (workdir / "mlruns").as_uri(),
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # it runs `uvicorn`
        "UVICORN_LOOP": loop,
        "UVICORN_HTTP": http,
    }
    base = f"http://127.0.0.1:{port}"
    name = MLFLOW_FAST if fast_http else MLFLOW
    with _process(name, command, env, f"{base}/ping", workdir / f"{name}.log"):
        yield Contender(name, f"{base}/invocations", dataframe_split, _plain_labels)


FASTAPI_FLOOR = "FastAPI floor"
FASTAPI_FAST_FLOOR = "FastAPI floor, uvloop"


@contextlib.contextmanager
def fastapi_server(workdir: Path, model: Any, *, fast_http: bool) -> Iterator[Contender]:
    """The hand-written FastAPI floor under uvicorn (one worker): on asyncio + h11 (what
    ``pip install fastapi uvicorn`` runs), or on uvloop + httptools (``uvicorn[standard]``,
    the HTTP stack conveyor's ``serving`` extra installs)."""
    python = mlflow_python()
    (workdir / "fastapi_floor.py").write_text(FASTAPI_APP)
    port = free_port()
    command = [str(python), "-m", "uvicorn", "fastapi_floor:app", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--log-level", "warning", "--app-dir", str(workdir)]
    command += ["--loop", "uvloop", "--http", "httptools"] if fast_http else []
    command += [] if fast_http else ["--loop", "asyncio", "--http", "h11"]
    env = {**os.environ, "BENCH_MODEL_PICKLE": str(_pickle(workdir, model))}
    base = f"http://127.0.0.1:{port}"
    name = FASTAPI_FAST_FLOOR if fast_http else FASTAPI_FLOOR
    with _process(name, command, env, f"{base}/health", workdir / f"{name}.log"):
        yield Contender(name, f"{base}/predict", bare_instances, _plain_labels)

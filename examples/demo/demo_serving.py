"""Part 3 of ``make demo``: serve the production model, call it with a real client, give feedback.

``conveyor serve`` runs as its own process on a free port of 127.0.0.1
(:class:`conveyor.serving.server_process.ServerProcess` starts it, waits until
``/v2/health/ready`` answers and stops it with SIGTERM). A client sends one request per row of
a span the models have never seen: half over the Open Inference Protocol's REST API
(``POST /v2/models/census/infer``, httpx), one in four over the same protocol's gRPC service
(``ModelInfer``, grpc) and one in four over TF Serving's REST API
(``POST /v1/models/census:predict``); then it posts the true labels to ``POST /v1/feedback``.
After the graceful stop, the prediction log and its join with the feedback are read with the
library (:mod:`conveyor.serving.prediction_log`, :class:`conveyor.serving.feedback.FeedbackStore`)
and the log's tail with ``conveyor predictions tail``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from conveyor.config import load_settings
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.grpc_server import SERVICE
from conveyor.serving.prediction_log import connect, prediction_log_url
from conveyor.serving.protocols import open_inference_pb2 as pb
from conveyor.serving.server_process import ServerProcess, free_port

MODEL = "census"
LABEL = "income"
POSITIVE = ">50K"
LIVE_SPAN = 5
REQUESTS = 200
SHOWN = 8


@dataclass(frozen=True)
class Answer:
    """One request and what the server said."""

    request_id: str
    protocol: str
    version: str
    predicted: Any
    p_positive: float
    truth: Any


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def _live_rows(folder: Path, generator: Path) -> pd.DataFrame:
    """Rows of span 5: the new normal of spans 3-4 goes on (older, more educated)."""
    command = [sys.executable, str(generator), str(folder), "--spans", "1"]
    command += ["--first-span", str(LIVE_SPAN), "--rows", str(REQUESTS)]
    command += ["--drift", f"{LIVE_SPAN}:covariate=1.0"]
    subprocess.run(command, check=True, capture_output=True)
    # an empty field is an empty text, as ``ingest`` reads it (pandas would make it NaN)
    return pd.read_csv(folder / f"span={LIVE_SPAN}" / "data.csv", keep_default_na=False)


def _v2_body(row: dict[str, Any], request_id: str) -> dict[str, Any]:
    """An Open Inference Protocol request: one tensor per feature, one row."""
    inputs = [
        {
            "name": name,
            "datatype": "INT64" if isinstance(value, int) else "BYTES",
            "shape": [1],
            "data": [value],
        }
        for name, value in row.items()
    ]
    return {"id": request_id, "inputs": inputs}


def _grpc_infer(
    infer: grpc.UnaryUnaryMultiCallable, features: dict[str, Any], request_id: str
) -> tuple[Any, list[float], str]:
    """One ``ModelInfer`` call with typed contents: (label, probabilities, version)."""
    request = pb.ModelInferRequest(model_name=MODEL, id=request_id)
    for name, value in features.items():
        tensor = request.inputs.add(name=name, shape=[1])
        if isinstance(value, int):
            tensor.datatype = "INT64"
            tensor.contents.int64_contents.append(value)
        else:
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.append(str(value).encode())
    response = infer(request, timeout=30)
    outputs = {o.name: o.contents for o in response.outputs}
    label = outputs["label"].bytes_contents[0].decode()
    return label, list(outputs["probabilities"].fp64_contents), response.model_version


def _ask(
    client: httpx.Client,
    infer: grpc.UnaryUnaryMultiCallable,
    index: int,
    row: dict[str, Any],
    run: str,
) -> Answer:
    """Send one row: over TF Serving's REST API, V2 over gRPC, or V2 over REST."""
    request_id = f"demo-{run}-{index:04d}"
    features = {k: v for k, v in row.items() if k != LABEL}
    headers = {"X-Request-Id": request_id}
    classes = ["<=50K", POSITIVE]  # the signature's class order
    if index % 4 == 2:
        label, probabilities, version = _grpc_infer(infer, features, request_id)
        return Answer(
            request_id=request_id,
            protocol="grpc",
            version=version,
            predicted=label,
            p_positive=probabilities[classes.index(POSITIVE)],
            truth=row[LABEL],
        )
    if index % 4 == 3:
        reply = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [features]},
                            headers=headers)  # fmt: skip
        reply.raise_for_status()
        prediction = reply.json()["predictions"][0]
        label, probabilities, protocol = prediction["label"], prediction["probabilities"], "v1"
    else:
        reply = client.post(f"/v2/models/{MODEL}/infer", json=_v2_body(features, request_id))
        reply.raise_for_status()
        outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
        label, probabilities, protocol = outputs["label"][0], outputs["probabilities"], "v2"
    return Answer(
        request_id=request_id,
        protocol=protocol,
        version=reply.headers["X-Model-Version"],
        predicted=label,
        p_positive=float(probabilities[classes.index(POSITIVE)]),
        truth=row[LABEL],
    )


def _table(answers: list[Answer]) -> Table:
    table = Table(title=f"the first {len(answers)} answers", title_justify="left")
    for column in ("request id", "protocol", "version", "predicted", f"P({POSITIVE})", "truth"):
        table.add_column(column, justify="right" if column.startswith("P(") else "left")
    for a in answers:
        mark = "" if a.predicted == a.truth else " ✗"
        table.add_row(
            a.request_id, a.protocol, a.version, f"{a.predicted}{mark}", f"{a.p_positive:.3f}",
            str(a.truth),
        )  # fmt: skip
    return table


def _counts(run: str) -> tuple[int, int]:
    """Predictions this demo logged, and how many of them have feedback (library reads)."""
    root = load_settings().artifact_url.rstrip("/")
    pattern = f"demo-{run}-%"
    con = connect(prediction_log_url(root))
    try:
        (logged,) = con.execute(
            "SELECT count(*) FROM predictions WHERE request_id LIKE ?", [pattern]
        ).fetchone() or (0,)
    finally:
        con.close()
    joined = FeedbackStore(root).joined(model=MODEL)
    ids = [rid for rid in joined.column("request_id").to_pylist() if rid.startswith(f"demo-{run}-")]
    return int(logged), len(ids)


def serve_and_collect_feedback(data: Path, generator: Path) -> None:
    """Serve production, send ``REQUESTS`` rows, post their labels, stop, read the log."""
    rows = _live_rows(data, generator).to_dict(orient="records")
    run = uuid.uuid4().hex[:6]  # request ids unique to this demo run
    grpc_port = free_port()
    server = ServerProcess(
        load_settings(), models=[MODEL], access_log=True, extra_args=["--grpc-port", str(grpc_port)]
    )
    _banner("10. serve the production model: `conveyor serve` in its own process")
    started = time.monotonic()
    server.start(timeout_s=120)
    print(
        f"$ conveyor serve --port {server.port} --grpc-port {grpc_port} --models {MODEL}"
        f"   (pid {server.pid})"
    )
    print(f"ready in {time.monotonic() - started:.1f}s; its log: {server.log_path}")
    try:
        _banner(f"11. a client sends {len(rows)} requests (span {LIVE_SPAN}) and posts feedback")
        with (
            httpx.Client(base_url=server.url, timeout=30) as client,
            grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
        ):
            infer = channel.unary_unary(
                f"/{SERVICE}/ModelInfer",
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            began = time.monotonic()
            answers = [_ask(client, infer, i, row, run) for i, row in enumerate(rows)]
            took = time.monotonic() - began
            feedback = [{"request_id": a.request_id, "label": a.truth} for a in answers]
            stored = client.post("/v1/feedback", json={"feedback": feedback})
            stored.raise_for_status()
        right = sum(a.predicted == a.truth for a in answers)
        by_protocol = {p: sum(a.protocol == p for a in answers) for p in ("v2", "grpc", "v1")}
        print(
            f"served {len(answers)} requests in {took:.1f}s ({by_protocol['v2']} V2 infer, "
            f"{by_protocol['grpc']} V2 over gRPC, {by_protocol['v1']} TF Serving predict); "
            f"{right} of them right "
            f"({right / len(answers):.1%}); feedback stored: {stored.json()['stored']}"
        )
        Console(width=110).print(_table(answers[:SHOWN]))
    finally:
        server.stop()
    if server.killed:
        raise SystemExit("demo: the server did not stop on SIGTERM and was killed")
    print("server stopped with SIGTERM: a graceful shutdown, which flushed the prediction log")
    _banner("12. the prediction log, read with the library")
    logged, joined = _counts(run)
    print(f"prediction log: {logged} records for this demo's {len(answers)} requests")
    print(f"feedback joined to predictions: {joined} of {logged}")
    subprocess.run([sys.executable, "-m", "conveyor", "predictions", "tail", "-n", "3"], check=True)

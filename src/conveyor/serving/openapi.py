"""The OpenAPI 3.1 description of the serving app (``GET /openapi.json``), written by hand.

Written from the specifications the endpoints follow, not generated from the code, so that a
difference between the two is a finding (the fuzz test, ``tests/integration/
test_serving_fuzz.py``, runs schemathesis against a real server with this document):

- Open Inference Protocol REST (``kserve/open-inference-protocol``,
  ``specification/protocol/inference_rest.md``), with Triton's binary tensor data extension
  (``application/octet-stream`` bodies whose JSON header length is in
  ``Inference-Header-Content-Length``);
- TensorFlow Serving REST (``tensorflow_serving/g3doc/api_rest.md``): model status, metadata,
  ``:predict``, ``:classify`` and ``:regress`` (answered with ``results``, as TF Serving does:
  the spec's format section says ``result`` but its worked example and the server say
  ``results``);
- conveyor's own ``/v1/feedback``, ``/metrics`` and this document.

Every error is ``{"error": message}`` (the ``Error`` schema) with status 400 (invalid
argument), 401 (feedback without the bearer token), 404 (unknown model, alias, version or
endpoint), 405, 413 (body too large) or 503 (not ready); a 500 is a server fault.
"""

from __future__ import annotations

from typing import Any

from conveyor.serving.http import DEFAULT_STICKY_HEADER

__all__ = ["openapi_document"]

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


def _obj(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


_STRING: Schema = {"type": "string"}
_TEXT_LIST: Schema = {"type": "array", "items": _STRING}
_SHAPE: Schema = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_PARAMETERS: Schema = {"type": "object", "additionalProperties": True}
_V2_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
_TF_VALUE: Schema = {
    "description": 'A number, string, boolean, {"b64": ...} binary value, or a nested list.',
}


def _schemas() -> dict[str, Schema]:
    tensor_metadata = _obj(
        ["name", "datatype", "shape"],
        name=_STRING,
        datatype={"type": "string", "enum": _V2_DATATYPES},
        shape={"type": "array", "items": {"type": "integer"}},
    )
    feedback = {
        **_obj(["request_id", "label"], request_id={"type": "string", "minLength": 1}),
        "additionalProperties": False,
    }
    feedback["properties"] |= {
        "label": {"description": "Any JSON value: the ground truth of the request."},
        "time": {"type": "string", "format": "date-time"},
    }
    return {
        "Error": _obj(["error"], error=_STRING),
        "V2ServerMetadata": _obj(
            ["name", "version", "extensions"], name=_STRING, version=_STRING, extensions=_TEXT_LIST
        ),
        "V2Live": _obj(["live"], live={"type": "boolean"}),
        "V2Ready": _obj(["ready"], ready={"type": "boolean"}),
        "V2ModelReady": _obj(["name", "ready"], name=_STRING, ready={"type": "boolean"}),
        "V2TensorMetadata": tensor_metadata,
        "V2ModelMetadata": _obj(
            ["name", "platform", "inputs", "outputs"],
            name=_STRING,
            versions=_TEXT_LIST,
            platform=_STRING,
            inputs={"type": "array", "items": _ref("V2TensorMetadata")},
            outputs={"type": "array", "items": _ref("V2TensorMetadata")},
        ),
        "V2RequestInput": _obj(
            ["name", "shape", "datatype"],
            name=_STRING,
            shape=_SHAPE,
            datatype={"type": "string", "enum": _V2_DATATYPES},
            parameters=_PARAMETERS,
            data={"description": "The tensor's values, flat or nested in row-major order."},
        ),
        "V2RequestOutput": _obj(["name"], name=_STRING, parameters=_PARAMETERS),
        "V2InferRequest": _obj(
            ["inputs"],
            id=_STRING,
            parameters=_PARAMETERS,
            inputs={"type": "array", "items": _ref("V2RequestInput"), "minItems": 1},
            outputs={"type": "array", "items": _ref("V2RequestOutput")},
        ),
        "V2ResponseOutput": _obj(
            ["name", "shape", "datatype"],
            name=_STRING,
            shape=_SHAPE,
            datatype={"type": "string", "enum": _V2_DATATYPES},
            parameters=_PARAMETERS,
            data={"type": "array"},
        ),
        "V2InferResponse": _obj(
            ["model_name", "outputs"],
            model_name=_STRING,
            model_version=_STRING,
            id=_STRING,
            parameters=_PARAMETERS,
            outputs={"type": "array", "items": _ref("V2ResponseOutput")},
        ),
        "TFModelStatus": _obj(
            ["model_version_status"],
            model_version_status={
                "type": "array",
                "items": _obj(
                    ["version", "state", "status"],
                    version=_STRING,
                    state={
                        "type": "string",
                        "enum": ["UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END"],
                    },
                    status=_obj(
                        ["error_code", "error_message"], error_code=_STRING, error_message=_STRING
                    ),
                ),
            },
        ),
        "TFModelMetadata": _obj(
            ["model_spec", "metadata"],
            model_spec=_obj(
                ["name", "version"], name=_STRING, signature_name=_STRING, version=_STRING
            ),
            metadata=_obj(["signature_def"], signature_def={"type": "object"}),
        ),
        "TFPredictRequest": {
            "type": "object",
            "properties": {
                "signature_name": _STRING,
                "instances": {**_TF_VALUE, "type": "array", "minItems": 1},
                "inputs": _TF_VALUE,
            },
            "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        },
        "TFPredictResponse": {
            "type": "object",
            "properties": {"predictions": {"type": "array"}, "outputs": _TF_VALUE},
            "oneOf": [{"required": ["predictions"]}, {"required": ["outputs"]}],
        },
        "TFExamplesRequest": _obj(
            ["examples"],
            signature_name=_STRING,
            context={"type": "object", "additionalProperties": _TF_VALUE},
            examples={
                "type": "array",
                "minItems": 1,
                "items": {"type": "object", "additionalProperties": _TF_VALUE},
            },
        ),
        "TFClassifyResponse": _obj(
            ["results"],
            results={
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "prefixItems": [_STRING, {"type": "number"}],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                },
            },
        ),
        "TFRegressResponse": _obj(
            ["results"], results={"type": "array", "items": {"type": "number"}}
        ),
        "Feedback": feedback,
        "FeedbackRequest": {
            "oneOf": [
                _ref("Feedback"),
                {
                    **_obj(
                        ["feedback"],
                        feedback={"type": "array", "minItems": 1, "items": _ref("Feedback")},
                    ),
                    "additionalProperties": False,
                },
            ]
        },
        "FeedbackResponse": _obj(["stored"], stored={"type": "integer", "minimum": 1}),
    }


def _parameters(sticky_header: str) -> dict[str, Any]:
    return {
        "model": {
            "name": "model",
            "in": "path",
            "required": True,
            "description": "A served model's name.",
            "schema": _STRING,
        },
        "version": {
            "name": "version",
            "in": "path",
            "required": True,
            "description": "A registered version number (bypasses traffic weights).",
            "schema": {"type": "integer", "minimum": 1},
        },
        "label": {
            "name": "label",
            "in": "path",
            "required": True,
            "description": "An alias of the model (production, canary, ...).",
            "schema": _STRING,
        },
        "request_id": {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            "description": "Echoed in the answer and the prediction log (generated if absent).",
            "schema": _STRING,
        },
        "sticky_key": {
            "name": sticky_header,
            "in": "header",
            "required": False,
            "description": "Keeps one caller on one version of a weighted route.",
            "schema": _STRING,
        },
    }


def _param_refs(*names: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/components/parameters/{name}"} for name in names]


_ANSWER_HEADERS = {
    "X-Model-Version": {"description": "The version that answered.", "schema": _STRING},
    "X-Model-Route": {
        "description": "The route that chose it: the alias, or v<N> for an explicit version.",
        "schema": _STRING,
    },
}


def _answer(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "headers": _ANSWER_HEADERS, "content": _json(schema)}


def _client_errors(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "Invalid argument: the message names the field or input.",
        401: "Missing or wrong bearer token.",
        404: "Unknown model, alias, version or endpoint.",
        413: "The request body is over the size limit.",
        503: "Not ready.",
    }
    return {str(s): _error(descriptions[s]) for s in statuses}


def _v2_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v2": {"get": _get("Server metadata", _ref("V2ServerMetadata"), "v2ServerMetadata")},
        "/v2/health/live": {"get": _get("Server liveness", _ref("V2Live"), "v2Live")},
        "/v2/health/ready": {
            "get": {
                **_get("Server readiness", _ref("V2Ready"), "v2Ready"),
                "responses": {
                    "200": {"description": "Ready", "content": _json(_ref("V2Ready"))},
                    "503": {"description": "Not ready", "content": _json(_ref("V2Ready"))},
                },
            }
        },
    }
    for prefix, params, suffix in (
        ("/v2/models/{model}", ("model", "sticky_key"), ""),
        ("/v2/models/{model}/versions/{version}", ("model", "version"), "Version"),
    ):
        paths[prefix] = {
            "get": {
                "operationId": f"v2ModelMetadata{suffix}",
                "summary": "Model metadata (read from the bundle manifest, never loading it)",
                "parameters": _param_refs(*params),
                "responses": {
                    "200": _answer("Model metadata", _ref("V2ModelMetadata")),
                    **_client_errors(404),
                },
            }
        }
        paths[f"{prefix}/ready"] = {
            "get": {
                "operationId": f"v2ModelReady{suffix}",
                "summary": "Model readiness",
                "parameters": _param_refs(*params),
                "responses": {
                    "200": _answer("Ready", _ref("V2ModelReady")),
                    "503": _answer("Not ready", _ref("V2ModelReady")),
                    **_client_errors(404),
                },
            }
        }
        paths[f"{prefix}/infer"] = {"post": _v2_infer(f"v2Infer{suffix}", params)}
    return paths


def _v2_infer(operation_id: str, params: tuple[str, ...]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": "Inference (JSON, or JSON + binary tensors)",
        "parameters": [
            *_param_refs(*params, "request_id"),
            {
                "name": "Inference-Header-Content-Length",
                "in": "header",
                "required": False,
                "description": "Binary extension: length of the JSON part of the body.",
                "schema": {"type": "integer", "minimum": 0},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                **_json(_ref("V2InferRequest")),
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {
                "description": "Inference result (binary tensors after the JSON when asked)",
                "headers": _ANSWER_HEADERS,
                "content": {
                    **_json(_ref("V2InferResponse")),
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            **_client_errors(400, 404, 413),
        },
    }


def _get(summary: str, schema: Schema, operation_id: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "responses": {"200": {"description": summary, "content": _json(schema)}},
    }


_TF_BASES = (
    ("/v1/models/{model}", ("model", "sticky_key"), ""),
    ("/v1/models/{model}/versions/{version}", ("model", "version"), "Version"),
    ("/v1/models/{model}/labels/{label}", ("model", "label", "sticky_key"), "Label"),
)
_TF_VERBS = (
    ("predict", "TFPredictRequest", "TFPredictResponse", "Predict (instances or inputs)"),
    ("classify", "TFExamplesRequest", "TFClassifyResponse", "Classify examples (classifiers)"),
    ("regress", "TFExamplesRequest", "TFRegressResponse", "Regress examples (regression models)"),
)


def _tf_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for base, params, suffix in _TF_BASES:
        paths[base] = {
            "get": {
                "operationId": f"tfModelStatus{suffix}",
                "summary": "Model status",
                "parameters": _param_refs(*params),
                "responses": {
                    "200": _answer("Model status", _ref("TFModelStatus")),
                    **_client_errors(404),
                },
            }
        }
        paths[f"{base}/metadata"] = {
            "get": {
                "operationId": f"tfModelMetadata{suffix}",
                "summary": "Signature metadata (read from the bundle manifest)",
                "parameters": _param_refs(*params),
                "responses": {
                    "200": _answer("Model metadata", _ref("TFModelMetadata")),
                    **_client_errors(404),
                },
            }
        }
        for verb, request, response, summary in _TF_VERBS:
            paths[f"{base}:{verb}"] = {
                "post": {
                    "operationId": f"tf{verb.capitalize()}{suffix}",
                    "summary": summary,
                    "parameters": _param_refs(*params, "request_id"),
                    "requestBody": {"required": True, "content": _json(_ref(request))},
                    "responses": {
                        "200": _answer(summary, _ref(response)),
                        **_client_errors(400, 404, 413),
                    },
                }
            }
    return paths


def _other_paths() -> dict[str, Any]:
    return {
        "/v1/feedback": {
            "post": {
                "operationId": "feedback",
                "summary": "Ground truth for earlier predictions, by request id",
                "security": [{}, {"bearer": []}],
                "requestBody": {"required": True, "content": _json(_ref("FeedbackRequest"))},
                "responses": {
                    "200": {"description": "Stored", "content": _json(_ref("FeedbackResponse"))},
                    **_client_errors(400, 401, 413),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of this worker (text exposition format)",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": _STRING}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({})}},
            }
        },
    }


def openapi_document(version: str, *, sticky_header: str = DEFAULT_STICKY_HEADER) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the serving app.

    Args:
        version: The server's version (``info.version``).
        sticky_header: The request header read as the sticky routing key.

    Returns:
        A JSON-able dict.
    """
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "conveyor serving",
            "version": version,
            "description": (
                "Open Inference Protocol (KServe V2) and TensorFlow Serving REST over the "
                'models of a conveyor registry. Errors are {"error": message}.'
            ),
        },
        "paths": {**_v2_paths(), **_tf_paths(), **_other_paths()},
        "components": {
            "schemas": _schemas(),
            "parameters": _parameters(sticky_header),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

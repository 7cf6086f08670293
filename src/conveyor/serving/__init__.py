"""Model serving (issue 5): protocols, routing, prediction log and feedback.

:mod:`conveyor.serving.protocols` holds the pure request/response codecs for the Open Inference
Protocol (KServe V2) REST API, with the binary tensor data extension, and for the TensorFlow
Serving REST API; the ASGI server builds on them.
"""

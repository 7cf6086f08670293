"""Pure codecs for the serving protocols: no HTTP, no model loading.

- :mod:`conveyor.serving.protocols.v2`: Open Inference Protocol (KServe V2) REST, with the binary
  tensor data extension.
- :mod:`conveyor.serving.protocols.tfserving`: TensorFlow Serving REST.

Both parse into a :class:`TabularBatch` and raise :class:`ProtocolError` (an HTTP status and a
message naming the field at fault).
"""

from conveyor.serving.protocols.errors import ProtocolError
from conveyor.serving.protocols.tabular import ModelOutputs, TabularBatch

__all__ = ["ModelOutputs", "ProtocolError", "TabularBatch"]

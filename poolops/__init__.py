"""poolops: every CNN pooling operation, exact in PyTorch and in ONNX Runtime for any input size.

``poolops.list_ops()`` and ``poolops.get_op(name)`` reach the registry (no torch needed);
``poolops.functional`` and ``poolops.nn`` are the torch faces; ``poolops.onnx`` builds
op graphs and exports models.
"""

from poolops.params import ParamError
from poolops.registry import OpSpec, get_op, list_ops

__version__ = "0.1.0"
__all__ = ["OpSpec", "ParamError", "__version__", "get_op", "list_ops"]

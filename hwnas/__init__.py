"""hwnas: hardware-aware mobile model search.

Build a latency table for a device, train a weight-sharing supernet once, search the most accurate subnet under a latency
budget, and export it to ONNX with proof that it is correct and as fast as predicted.
"""

from hwnas.errors import HwnasError

__all__ = ["HwnasError", "__version__"]
__version__ = "0.1.0"

"""Architectures, quantization layers, the vote and the spec -> model builder.

Importing the package registers every built-in architecture's builder (``nn/architectures.py``)."""

import trend_core.nn.architectures  # noqa: F401  (registers the builders)

"""TREND Lab engine: transferability of adversarial examples and robust ensembles (no Streamlit here)."""
from .errors import TrendError
from .specs import ModelSpec

__version__ = "0.1.0"
__all__ = ["ModelSpec", "TrendError", "__version__"]

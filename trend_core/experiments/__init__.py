"""experiments: see the layer map in trend_core/__init__.py."""

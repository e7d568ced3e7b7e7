"""Per-framework training backends behind one contract (`base.Backend`), imported lazily by
name through `base.get_backend`, so `python -m training --framework torch` never imports
TensorFlow or JAX."""

from .base import BACKENDS, Backend, ModelConfig, get_backend

__all__ = ["BACKENDS", "Backend", "ModelConfig", "get_backend"]

"""Training-engine glue between mmgc and mmengine."""
from . import checkpoint_compat  # noqa: F401

__all__ = ['checkpoint_compat']

"""mmgc: attention plugin blocks for MMDetection 3.x.

``import mmgc`` (or ``custom_imports = dict(imports=['mmgc'])`` in a config)
registers mmgc's blocks, backbones and necks, ``CheckedCocoDataset``,
``CheckedCocoMetric``, the reliable-training loops, hooks and optim
wrapper and the progress-bar runner (``mmgc.engine``) and
``DetComparisonVisualizer`` in the registries, and makes mmengine
checkpoints loadable under torch's ``weights_only`` default.
"""
from .datasets import CheckedCocoDataset  # noqa: F401  (registers it)
from .engine import checkpoint_compat  # noqa: F401  (allow-lists globals)
from .evaluation import CheckedCocoMetric  # noqa: F401  (registers it)
from .models import *  # noqa: F401,F403
from .version import __version__
from .visualization import DetComparisonVisualizer  # noqa: F401

__all__ = ['__version__']

"""mmgc's models; importing this registers them in MMDetection's MODELS."""
from .attach_plugins import attach_plugins, build_with_plugins
from .backbones import PluginResNet, PluginResNeXt
from .catalogue import CATALOGUE
from .cbam_block import CBAMBlock
from .gc_block import GCBlock
from .necks import PluginFPN
from .nl_block import NLBlock
from .sasa import SASABlock, SASAConv
from .se_block import SEBlock
from .utils.scope import register_in_root

# found by mmcv's plugin/conv builders with or without a default scope
register_in_root(*(entry.cls for entry in CATALOGUE))

__all__ = [
    'GCBlock', 'NLBlock', 'SEBlock', 'SASAConv', 'SASABlock', 'CBAMBlock',
    'PluginResNet', 'PluginResNeXt', 'PluginFPN', 'attach_plugins',
    'build_with_plugins', 'CATALOGUE'
]

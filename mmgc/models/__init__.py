"""mmgc's models; importing this registers them in MMDetection's MODELS."""
from .backbones import PluginResNet, PluginResNeXt
from .gc_block import GCBlock
from .necks import PluginFPN
from .nl_block import NLBlock
from .sasa import SASABlock, SASAConv
from .se_block import SEBlock

__all__ = [
    'GCBlock', 'NLBlock', 'SEBlock', 'SASAConv', 'SASABlock', 'PluginResNet',
    'PluginResNeXt', 'PluginFPN'
]

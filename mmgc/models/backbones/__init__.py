"""Backbones with mmgc's placement options; importing registers them."""
from .plugin_resnet import PerBlockPlacementMixin, PluginResNet, PluginResNeXt

__all__ = ['PerBlockPlacementMixin', 'PluginResNet', 'PluginResNeXt']

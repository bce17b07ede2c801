"""Necks with mmgc's placement options; importing registers them."""
from .plugin_fpn import PluginFPN

__all__ = ['PluginFPN']

"""Plugins on a module's output: ``module(x)`` -> ``p_2(p_1(module(x)))``.

Used where MMDetection has no plugin hook of its own: after a whole ResNet
block (``position='after_block'``) and after FPN's lateral and output convs.
The plugins become children of the module they follow, named like mmdet's
block plugins (``<abbr><postfix>``, e.g. ``fpn_convs.2.context_block``), so a
module without plugins keeps exactly its own state-dict keys; a forward hook
(a module-level function, so deep copies and pickles of the model keep
working) runs them after the module's own ``forward``.
"""
from typing import Any, Iterable, List, Mapping, Tuple

from mmcv.cnn import build_plugin_layer
from torch import nn

from .validation import ArgumentError

#: Attribute of a module listing its output plugins, in order.
PLUGIN_NAMES_ATTR = 'output_plugin_names'


def run_output_plugins(module: nn.Module, args: Tuple[Any, ...],
                       output: Any) -> Any:
    """Forward hook: feed ``module``'s output through its plugins in order.

    Args:
        module (nn.Module): The module that just ran.
        args (tuple): Its positional inputs (unused).
        output (Tensor): Its output, ``[B, C, H, W]``.

    Returns:
        Tensor: The last plugin's output, ``[B, C, H, W]``.
    """
    for name in getattr(module, PLUGIN_NAMES_ATTR):
        output = getattr(module, name)(output)  # [B, C, H, W]
    return output


def add_plugin(module: nn.Module, cfg: Mapping, in_channels: int,
               owner: str) -> str:
    """Build one plugin from ``cfg`` as a child of ``module``.

    Args:
        module (nn.Module): Its parent.
        cfg (Mapping): Plugin config (``type``, arguments, optional
            ``postfix``); gets ``in_channels``.
        in_channels (int): Channels of the map it transforms.
        owner (str): Class that places it, for error messages.

    Returns:
        str: Its attribute name, ``<abbr><postfix>`` (as mmdet's).
    """
    cfg = dict(cfg)
    postfix = cfg.pop('postfix', '')
    name, layer = build_plugin_layer(
        cfg, postfix=postfix, in_channels=in_channels)
    if hasattr(module, name):
        raise ArgumentError(
            f'{owner}: plugin name {name!r} is already taken in '
            f'{type(module).__name__}; give the plugin cfg a distinct '
            f"postfix, e.g. dict(type={cfg['type']!r}, postfix='_2')")
    module.add_module(name, layer)
    return name


def attach_output_plugins(module: nn.Module, cfgs: Iterable[Mapping],
                          in_channels: int, owner: str) -> List[str]:
    """Build plugins from ``cfgs`` and run them on ``module``'s output.

    Args:
        module (nn.Module): The module whose output the plugins transform.
        cfgs (Iterable[Mapping]): Plugin configs (``type`` and arguments;
            optional ``postfix`` to tell apart two plugins of one type, as in
            mmdet's ``Bottleneck``). Each gets ``in_channels``.
        in_channels (int): Channels of ``module``'s output.
        owner (str): Class that places the plugins, for error messages.

    Returns:
        list[str]: Names of all output plugins of ``module``, in order.
    """
    names = list(getattr(module, PLUGIN_NAMES_ATTR, []))
    for cfg in cfgs:
        names.append(add_plugin(module, cfg, in_channels, owner))
    if names and not hasattr(module, PLUGIN_NAMES_ATTR):
        module.register_forward_hook(run_output_plugins)
    if names:
        setattr(module, PLUGIN_NAMES_ATTR, names)
    return names

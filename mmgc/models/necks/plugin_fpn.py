"""FPN with plugins on its lateral / output convs and attention output convs.

MMDetection's ``FPN`` has no plugin hook. ``PluginFPN`` takes FPN's
arguments plus

* ``plugins``: like ResNet's plugin dicts, with ``position``
  ``'after_lateral'`` (on a lateral 1x1 conv's output, before the top-down
  sum) or ``'after_fpn_conv'`` (on an output conv's result, i.e. on the
  pyramid level itself) and per-conv ``levels`` flags instead of
  ``stages``::

      plugins=[dict(cfg=dict(type='GCBlock', ratio=1 / 16),
                    position='after_fpn_conv',
                    levels=(True, True, True, True))]

  ``levels`` has one flag per lateral conv (``after_lateral``: the used
  backbone levels) or per output conv (``after_fpn_conv``: the used levels,
  then the extra stride-2 convs if ``add_extra_convs``); ``None`` means all.
* ``fpn_conv_cfg``: build the output convs (``fpn_convs``) as another conv
  type, e.g. ``dict(type='SASAConv', kernel_size=7, num_heads=8)`` -- the
  SASA paper's attention FPN --, optionally only at ``fpn_conv_levels``.
  ``kernel_size`` (default: the conv's own 3) sets the window; stride and
  bias follow FPN's conv.

A plugin lives under the conv it follows (``lateral_convs.0.context_block.*``,
``fpn_convs.2.se_block.*``); an attention output conv replaces the conv's
keys (``fpn_convs.0.conv.qkv.weight``, ``.rel_h``, ``.rel_w``, ``.bias``
instead of ``fpn_convs.0.conv.weight``/``.bias``). Without plugins and
``fpn_conv_cfg`` the module is key for key, and output for output, mmdet's
``FPN``.
"""
from typing import Any, List, Mapping, Optional, Sequence

from mmcv.cnn import ConvModule, build_conv_layer
from mmdet.models.necks import FPN
from mmdet.registry import MODELS

from ..utils import ArgumentError, to_int_pair
from ..utils.output_plugins import attach_output_plugins
from ..utils.placement import check_flags, check_plugin_entry

POSITIONS = ('after_lateral', 'after_fpn_conv')
PLUGIN_KEYS = ('cfg', 'position', 'levels')


@MODELS.register_module()
class PluginFPN(FPN):
    """mmdet's ``FPN`` with plugins and a configurable output conv type.

    Args:
        in_channels (list[int]): Channels of each backbone level (FPN's).
        out_channels (int): Channels of every pyramid level (FPN's).
        num_outs (int): Number of pyramid levels (FPN's).
        plugins (Sequence[dict], optional): Plugin dicts with keys ``cfg``,
            ``position`` (``'after_lateral'`` or ``'after_fpn_conv'``) and
            optional ``levels`` (see the module docstring). Plugins of one
            type at one conv need distinct ``postfix`` values in ``cfg``.
        fpn_conv_cfg (dict, optional): Conv config for the output convs,
            e.g. ``dict(type='SASAConv', kernel_size=7, num_heads=8)``.
        fpn_conv_levels (Sequence[bool], optional): Output convs built from
            ``fpn_conv_cfg``, one flag per output conv; default: all.
        **kwargs: FPN's other arguments (``start_level``,
            ``add_extra_convs``, ``norm_cfg``, ...).
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 plugins: Optional[Sequence[dict]] = None,
                 fpn_conv_cfg: Optional[dict] = None,
                 fpn_conv_levels: Optional[Sequence[bool]] = None,
                 **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, num_outs, **kwargs)
        owner = type(self).__name__
        if fpn_conv_cfg is None and fpn_conv_levels is not None:
            raise ArgumentError(
                f'{owner}: fpn_conv_levels={fpn_conv_levels!r} needs an '
                f"fpn_conv_cfg, e.g. dict(type='SASAConv', kernel_size=7, "
                f'num_heads=8)')
        if fpn_conv_cfg is not None:
            if not isinstance(fpn_conv_cfg, Mapping) or \
                    'type' not in fpn_conv_cfg:
                raise ArgumentError(
                    f'{owner}: fpn_conv_cfg={fpn_conv_cfg!r} must be a conv '
                    f"config with a 'type', e.g. dict(type='SASAConv', "
                    f'kernel_size=7, num_heads=8)')
            levels = check_flags('fpn_conv_levels', fpn_conv_levels,
                                 len(self.fpn_convs), 'output conv', owner)
            for fpn_conv, chosen in zip(self.fpn_convs, levels):
                if chosen:
                    self._rebuild_conv(fpn_conv, fpn_conv_cfg, owner)
        self.plugins = plugins
        for convs, cfgs in self._plugins_per_conv(plugins, owner):
            for conv, conv_cfgs in zip(convs, cfgs):
                attach_output_plugins(conv, conv_cfgs, out_channels, owner)

    def _plugins_per_conv(self, plugins: Optional[Sequence[dict]],
                          owner: str) -> list:
        """Check ``plugins`` and sort their cfgs by conv.

        Args:
            plugins (Sequence[dict], optional): See the class docstring.
            owner (str): Class name, for error messages.

        Returns:
            list[tuple]: Per position, ``(convs, cfgs)``: the ModuleList
            of convs and, for each conv, its plugin cfgs in the order of
            ``plugins``.
        """
        if plugins is None:
            return []
        if not isinstance(plugins, (list, tuple)):
            raise ArgumentError(f'{owner}: plugins={plugins!r} must be a list '
                                f'of dicts')
        targets = {
            'after_lateral': (self.lateral_convs, 'lateral conv'),
            'after_fpn_conv': (self.fpn_convs, 'output conv'),
        }
        cfgs = {
            pos: [[] for _ in convs]
            for pos, (convs, _) in targets.items()
        }
        for i, plugin in enumerate(plugins):
            name = f'plugins[{i}]'
            check_plugin_entry(name, plugin, POSITIONS, PLUGIN_KEYS, owner)
            convs, unit = targets[plugin['position']]
            levels = check_flags(f'{name}.levels', plugin.get('levels'),
                                 len(convs), unit, owner)
            for level, chosen in enumerate(levels):
                if chosen:
                    cfgs[plugin['position']][level].append(plugin['cfg'])
        return [(targets[pos][0], cfgs[pos]) for pos in POSITIONS]

    @staticmethod
    def _rebuild_conv(module: ConvModule, cfg: Mapping, owner: str) -> None:
        """Replace ``module.conv`` by a ``cfg`` layer with the same
        channels, stride and bias; the norm and activation stay.

        Args:
            module (ConvModule): One of FPN's output convs.
            cfg (Mapping): Conv config; its optional ``kernel_size``
                (default: the old conv's) sets the padding ``k // 2``.
            owner (str): Class name, for error messages.
        """
        old = module.conv
        cfg = dict(cfg)
        kernel_size = cfg.pop('kernel_size', old.kernel_size)
        kernel = to_int_pair('fpn_conv_cfg.kernel_size', kernel_size, owner)
        module.conv = build_conv_layer(
            cfg,
            old.in_channels,
            old.out_channels,
            kernel_size=kernel_size,  # as given, for the layer's messages
            stride=old.stride,
            padding=(kernel[0] // 2, kernel[1] // 2),
            bias=old.bias is not None)

"""ResNet / ResNeXt with plugins in chosen blocks and attention as conv2.

MMDetection's ``ResNet(plugins=[dict(cfg=..., stages=..., position=...)])``
puts a plugin into *every* block of the chosen stages. ``PluginResNet`` and
``PluginResNeXt`` take the same ``plugins`` list plus

* ``blocks``: per stage, ``None``/``'all'`` or a tuple of block indices
  (negative ones count from the stage's end), e.g. the non-local papers' one
  block in c4 after its last-but-one block::

      dict(cfg=dict(type='NLBlock'),
           stages=(False, False, True, False),
           blocks=(None, None, (-2, ), None),
           position='after_block')

* ``position='after_block'``: on the block's output (after the residual
  addition and ReLU), where the non-local papers insert their block; mmdet's
  ``'after_conv1'``/``'after_conv2'``/``'after_conv3'`` still work;
* ResNet-18/34 (``BasicBlock``, which mmdet refuses plugins): positions
  ``'after_conv1'`` (after its norm and ReLU, as in mmdet's ``Bottleneck``),
  ``'after_conv2'`` (after its norm, before the residual sum -- where
  bottlenecks have ``'after_conv3'``) and ``'after_block'``, per stage and
  per block as above;
* ``sasa``/``stage_with_sasa``, next to mmdet's ``dcn``/``stage_with_dcn``:
  every bottleneck of the chosen stages builds its 3x3 ``conv2`` -- the
  stride-2 one of a stage's first block included -- as the given attention
  layer (SASA paper: attention backbone, convolutional stem), through the
  very path mmdet's ``Bottleneck`` uses for DCN.

State-dict keys are mmdet's: a block with a plugin gains
``layer{s}.{b}.<abbr><postfix>.*`` exactly as in mmdet's ResNet, blocks
without one have no extra keys, and SASA stages have ``conv2.qkv.weight``,
``conv2.rel_h``, ``conv2.rel_w`` instead of ``conv2.weight``. All other keys
(stem, norms, ``conv1``/``conv3``, downsample) are unchanged, so an mmdet
ResNet checkpoint loads with only the new keys missing.
"""
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch.utils.checkpoint as cp
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.models.backbones.resnext import ResNeXt
from mmdet.models.layers import ResLayer
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..utils import ArgumentError, ArgumentKeyError, check_odd, to_int_pair
from ..utils.output_plugins import attach_output_plugins
from ..utils.placement import check_flags, check_plugin_entry, resolve_indices

#: Plugin positions inside a bottleneck (mmdet's) and on its output (ours).
CONV_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')
POSITIONS = CONV_POSITIONS + ('after_block', )
#: Plugin positions of a ResNet-18/34 ``BasicBlock`` (two convs).
BASIC_POSITIONS = ('after_conv1', 'after_conv2', 'after_block')
PLUGIN_KEYS = ('cfg', 'position', 'stages', 'blocks')

#: Per-block plugins: (mmdet plugin dicts for the conv positions,
#: plugin cfgs for ``after_block``).
BlockPlugins = Tuple[List[dict], List[dict]]


def sasa_conv2_cfg(sasa: Mapping) -> dict:
    """The conv cfg a bottleneck's ``conv2`` is built from in a SASA stage.

    mmdet's ``Bottleneck`` always asks for a 3x3 ``conv2``
    (``build_conv_layer(cfg, planes, planes, kernel_size=3, stride, ...)``),
    so the attention window ``kernel_size`` of ``sasa`` is passed as
    ``SASAConv``'s ``window_size``.

    Args:
        sasa (Mapping): e.g. ``dict(type='SASAConv', kernel_size=7,
            num_heads=8)``; ``type`` defaults to ``'SASAConv'``.

    Returns:
        dict: Config for ``build_conv_layer``.
    """
    cfg = dict(sasa)
    cfg.setdefault('type', 'SASAConv')
    if 'kernel_size' in cfg:
        cfg['window_size'] = cfg.pop('kernel_size')
    return cfg


class PluginBasicBlock(BasicBlock):
    """mmdet's ``BasicBlock`` (ResNet-18/34) with plugins after its convs.

    Same submodules and state-dict keys as ``BasicBlock`` plus the plugins
    (``<abbr><postfix>``, built as mmdet's ``Bottleneck`` builds them).

    Args:
        *args: ``BasicBlock``'s arguments.
        plugins (list[dict], optional): mmdet's block plugin dicts
            (``cfg``, ``position``) with ``position`` ``'after_conv1'``
            (after ``norm1`` and the ReLU) or ``'after_conv2'`` (after
            ``norm2``, before the residual sum); each gets ``planes``
            input channels.
        **kwargs: ``BasicBlock``'s keyword arguments.
    """

    def __init__(self,
                 *args: Any,
                 plugins: Optional[List[dict]] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plugins = plugins or []
        planes = self.conv2.out_channels
        self.plugins = plugins
        self.with_plugins = bool(plugins)
        self.after_conv1_plugin_names = self.make_block_plugins(
            planes,
            [p['cfg'] for p in plugins if p['position'] == 'after_conv1'])
        self.after_conv2_plugin_names = self.make_block_plugins(
            planes,
            [p['cfg'] for p in plugins if p['position'] == 'after_conv2'])

    # mmdet's own plugin building and chaining (distinct names, in order)
    make_block_plugins = Bottleneck.make_block_plugins
    forward_plugin = Bottleneck.forward_plugin

    def forward(self, x: Tensor) -> Tensor:
        """``BasicBlock.forward`` with the plugins at their positions.

        Args:
            x (Tensor): ``[B, C_in, H, W]``.

        Returns:
            Tensor: ``[B, planes, H / stride, W / stride]``.
        """

        def _inner_forward(x: Tensor) -> Tensor:
            identity = x
            out = self.relu(self.norm1(self.conv1(x)))  # [B, P, H', W']
            out = self.forward_plugin(out, self.after_conv1_plugin_names)
            out = self.norm2(self.conv2(out))  # [B, P, H', W']
            out = self.forward_plugin(out, self.after_conv2_plugin_names)
            if self.downsample is not None:
                identity = self.downsample(x)  # [B, P, H', W']
            return out + identity

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(_inner_forward, x)
        else:
            out = _inner_forward(x)
        return self.relu(out)


class _StageBlocks:
    """Stands in for the block class in mmdet's ``ResLayer``, which builds
    a stage's blocks one after the other with the same keyword arguments:
    block ``j`` gets its own plugins.

    Args:
        block (type): The bottleneck class.
        plugins_per_block (list[BlockPlugins]): Plugins of each block.
        owner (str): Backbone class, for error messages.
    """

    def __init__(self, block: type, plugins_per_block: List[BlockPlugins],
                 owner: str) -> None:
        self.block = block
        self.expansion = block.expansion
        self.plugins_per_block = plugins_per_block
        self.owner = owner
        self.built = 0

    def __call__(self, **kwargs: Any) -> nn.Module:
        """Build the next block of the stage.

        Args:
            **kwargs: The block arguments ResLayer passes (``inplanes``,
                ``planes``, ``stride``, ``dcn``, ...), without ``plugins``.

        Returns:
            nn.Module: The block, with its conv-position plugins built by
            mmdet and its ``after_block`` plugins attached.
        """
        conv_plugins, output_plugins = self.plugins_per_block[self.built]
        self.built += 1
        block = self.block
        if conv_plugins and issubclass(block, BasicBlock):
            block = PluginBasicBlock  # mmdet's BasicBlock takes no plugins
        layer = block(plugins=conv_plugins or None, **kwargs)
        attach_output_plugins(layer, output_plugins,
                              kwargs['planes'] * self.expansion, self.owner)
        return layer


class PerBlockPlacementMixin:
    """Per-block plugins and SASA ``conv2`` for mmdet's ResNet family.

    Mixed in before ``ResNet`` or ``ResNeXt`` (see :class:`PluginResNet`);
    checks the placement before the backbone is built and hands each stage's
    ``ResLayer`` a per-block builder.

    Args:
        depth (int): Network depth (mmdet's: 18, 34, 50, 101, 152);
            SASA needs bottlenecks (50, 101, 152).
        plugins (Sequence[dict], optional): mmdet's plugin dicts with the
            optional extra key ``blocks`` and the extra position
            ``'after_block'`` (see the module docstring).
        sasa (dict, optional): Attention layer for ``conv2``, e.g.
            ``dict(type='SASAConv', kernel_size=7, num_heads=8)``
            (``kernel_size`` is the attention window).
        stage_with_sasa (Sequence[bool]): Stages whose bottlenecks build
            ``conv2`` from ``sasa``. Default: none.
        **kwargs: The backbone's other arguments (mmdet's ``ResNet``).
    """

    def __init__(self,
                 depth: int,
                 plugins: Optional[Sequence[dict]] = None,
                 sasa: Optional[dict] = None,
                 stage_with_sasa: Sequence[bool] = (False, False, False,
                                                    False),
                 **kwargs: Any) -> None:
        owner = type(self).__name__
        if depth not in self.arch_settings:
            raise ArgumentKeyError(  # mmdet's ResNet: KeyError
                f'{owner}: depth={depth!r} is not supported; allowed: '
                f'{", ".join(map(str, self.arch_settings))}')
        block, stage_blocks = self.arch_settings[depth]
        num_stages = kwargs.get('num_stages', 4)
        stage_blocks = stage_blocks[:num_stages]
        if sasa is not None and not issubclass(block, Bottleneck):
            deep = [
                d for d, (b, _) in self.arch_settings.items()
                if issubclass(b, Bottleneck)
            ]
            raise ArgumentError(
                f'{owner}: sasa={sasa!r} replaces a bottleneck\'s 3x3 '
                f'conv2, but depth={depth} uses {block.__name__}; allowed '
                f'depths: {", ".join(map(str, deep))}')
        positions = (
            POSITIONS if issubclass(block, Bottleneck) else BASIC_POSITIONS)
        self._check_plugins(plugins, stage_blocks, positions, owner)
        if sasa is None and isinstance(stage_with_sasa, (list, tuple)) \
                and any(stage_with_sasa):
            raise ArgumentError(
                f'{owner}: stage_with_sasa={tuple(stage_with_sasa)!r} picks '
                f"stages but sasa=None; give e.g. sasa=dict(type='SASAConv', "
                f'kernel_size=7, num_heads=8)')
        if sasa is not None:
            stage_with_sasa = self._check_sasa(sasa, stage_with_sasa,
                                               num_stages, kwargs, owner)
        # Read by make_res_layer() while super().__init__ builds the stages.
        self.sasa = sasa
        self.stage_with_sasa = tuple(stage_with_sasa)
        super().__init__(depth=depth, plugins=plugins, **kwargs)

    @staticmethod
    def _check_plugins(plugins: Optional[Sequence[dict]],
                       stage_blocks: Sequence[int], positions: Sequence[str],
                       owner: str) -> None:
        """Validate ``plugins`` before anything is built.

        Args:
            plugins (Sequence[dict], optional): See the class docstring.
            stage_blocks (Sequence[int]): Number of blocks of each stage.
            positions (Sequence[str]): Positions the block type has.
            owner (str): Backbone class, for error messages.
        """
        if plugins is None:
            return
        if not isinstance(plugins, (list, tuple)):
            raise ArgumentError(f'{owner}: plugins={plugins!r} must be a list '
                                f'of dicts')
        num_stages = len(stage_blocks)
        for i, plugin in enumerate(plugins):
            name = f'plugins[{i}]'
            check_plugin_entry(name, plugin, positions, PLUGIN_KEYS, owner)
            stages = check_flags(f'{name}.stages', plugin.get('stages'),
                                 num_stages, 'stage', owner)
            blocks = plugin.get('blocks')
            if blocks is None:
                continue
            if not isinstance(blocks, (list, tuple)) or \
                    len(blocks) != num_stages:
                raise ArgumentError(
                    f"{owner}: {name}.blocks={blocks!r} must be a tuple of "
                    f"{num_stages} entries, one per stage, each None, 'all' "
                    f'or a tuple of block indices')
            for stage, (selected, chosen) in enumerate(zip(stages, blocks)):
                key = f'{name}.blocks[{stage}]'
                resolve_indices(key, chosen, stage_blocks[stage], owner)
                if not selected and chosen not in (None, 'all'):
                    raise ArgumentError(
                        f'{owner}: {key}={chosen!r} picks blocks of stage '
                        f'{stage}, which {name}.stages={plugin["stages"]!r} '
                        f'leaves out; allowed there: None')

    @staticmethod
    def _check_sasa(sasa: Any, stage_with_sasa: Any, num_stages: int,
                    kwargs: Mapping, owner: str) -> Tuple[bool, ...]:
        """Validate ``sasa`` and ``stage_with_sasa`` against the other
        backbone arguments.

        Args:
            sasa: The ``sasa`` argument (not None).
            stage_with_sasa: Its per-stage flags.
            num_stages (int): Number of stages.
            kwargs (Mapping): The backbone's other arguments (``conv_cfg``,
                ``dcn``, ``stage_with_dcn``).
            owner (str): Backbone class, for error messages.

        Returns:
            tuple[bool, ...]: ``num_stages`` flags.
        """
        if not isinstance(sasa, Mapping):
            raise ArgumentError(f"{owner}: sasa={sasa!r} must be a dict, e.g. "
                                f"dict(type='SASAConv', kernel_size=7, "
                                f'num_heads=8)')
        if 'kernel_size' in sasa and 'window_size' in sasa:
            raise ArgumentError(f'{owner}: sasa={sasa!r} gives both '
                                f'kernel_size and window_size; allowed: one '
                                f'of them')
        if 'kernel_size' in sasa:  # named as in the config, not window_size
            to_int_pair('sasa.kernel_size', sasa['kernel_size'], owner)
            check_odd('sasa.kernel_size', sasa['kernel_size'], owner)
        flags = check_flags('stage_with_sasa', stage_with_sasa, num_stages,
                            'stage', owner)
        if kwargs.get('conv_cfg') is not None:
            raise ArgumentError(
                f'{owner}: sasa needs conv_cfg=None (mmdet builds conv2 from '
                f'the DCN slot only without conv_cfg); got conv_cfg='
                f'{kwargs["conv_cfg"]!r}')
        if kwargs.get('dcn') is not None:
            dcn_flags = kwargs.get('stage_with_dcn', (False, ) * num_stages)
            both = [s for s in range(num_stages) if flags[s] and dcn_flags[s]]
            if both:
                raise ArgumentError(
                    f'{owner}: stage_with_sasa={tuple(stage_with_sasa)!r} '
                    f'and stage_with_dcn={tuple(dcn_flags)!r} both pick '
                    f'stage(s) {both}; conv2 can be one or the other')
        return flags

    def make_res_layer(self, **kwargs: Any) -> ResLayer:
        """Build one stage: SASA ``conv2`` if chosen, per-block plugins.

        Args:
            **kwargs: mmdet's ResLayer arguments for the stage (``block``,
                ``num_blocks``, ``dcn``, ``plugins`` -- already filtered by
                ``stages`` --, ...).

        Returns:
            ResLayer: The stage.
        """
        stage = len(self.res_layers)  # ResNet appends after each stage
        if self.sasa is not None and self.stage_with_sasa[stage]:
            kwargs['dcn'] = sasa_conv2_cfg(self.sasa)
        block = kwargs['block']
        kwargs['block'] = _StageBlocks(
            block,
            self._plugins_per_block(
                kwargs.pop('plugins'), stage, kwargs['num_blocks']),
            type(self).__name__)
        layer = super().make_res_layer(**kwargs)
        layer.block = block  # what ResLayer would have stored
        return layer

    def _plugins_per_block(self, stage_plugins: Optional[List[dict]],
                           stage: int, num_blocks: int) -> List[BlockPlugins]:
        """Distribute a stage's plugins over its blocks.

        Args:
            stage_plugins (list[dict], optional): The stage's plugin dicts
                (mmdet's ``make_stage_plugins`` output, ``blocks`` kept).
            stage (int): Stage index.
            num_blocks (int): Blocks in the stage.

        Returns:
            list[BlockPlugins]: Per block, its conv-position plugin dicts and
            its ``after_block`` plugin cfgs, in the order of ``plugins``.
        """
        per_block: List[BlockPlugins] = [([], []) for _ in range(num_blocks)]
        for plugin in stage_plugins or []:
            blocks = plugin.get('blocks')
            chosen = resolve_indices('blocks',
                                     None if blocks is None else blocks[stage],
                                     num_blocks,
                                     type(self).__name__)
            entry = {k: v for k, v in plugin.items() if k != 'blocks'}
            for index in chosen:
                if plugin['position'] == 'after_block':
                    per_block[index][1].append(plugin['cfg'])
                else:
                    per_block[index][0].append(entry)
        return per_block


@MODELS.register_module()
class PluginResNet(PerBlockPlacementMixin, ResNet):
    """mmdet's ``ResNet`` with per-block plugins, ``'after_block'`` plugins
    and SASA ``conv2`` stages; arguments of :class:`PerBlockPlacementMixin`
    plus mmdet's ``ResNet`` ones.

    Example:
        >>> backbone = PluginResNet(
        ...     depth=50,
        ...     plugins=[dict(cfg=dict(type='NLBlock'),
        ...                   stages=(False, False, True, False),
        ...                   blocks=(None, None, (-2, ), None),
        ...                   position='after_block')],
        ...     sasa=dict(type='SASAConv', kernel_size=7, num_heads=8),
        ...     stage_with_sasa=(False, False, False, True))
    """


@MODELS.register_module()
class PluginResNeXt(PerBlockPlacementMixin, ResNeXt):
    """mmdet's ``ResNeXt`` with the placement options of
    :class:`PluginResNet` (``groups``, ``base_width`` as in ResNeXt).
    SASA needs ``groups=1``: ``SASAConv`` has no grouped form."""

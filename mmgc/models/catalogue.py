"""The catalogue of mmgc's attention blocks: one entry per registered type.

Everything that needs to know "which blocks exist" -- the shared tests
(argument validation, precision, sizes, placement, ONNX export), the
attention-map analysis and the block benchmark -- reads this list. Adding
a block is its file plus one :class:`BlockEntry` in :data:`CATALOGUE`.

What the class itself already says is not repeated here: the module name a
host gives a plugin is its ``_abbr_``; whether it has attention maps is
whether it defines ``attention_maps(x, queries)`` (the interface documented
in :mod:`mmgc.analysis.attention`).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

from torch import nn

from .cbam_block import CBAMBlock
from .gc_block import GCBlock
from .nl_block import NLBlock
from .sasa import SASABlock, SASAConv
from .se_block import SEBlock

#: A plugin layer (``build_plugin_layer``: ResNet ``plugins=``, PluginFPN
#: ``plugins=``): ``cls(in_channels, **kwargs)``, same shape out.
PLUGIN = 'plugin'
#: A conv replacement (``build_conv_layer``: ResNet ``dcn=``/``sasa=``,
#: PluginFPN ``fpn_conv_cfg=``): ``cls(in_channels, out_channels, **kwargs)``.
CONV = 'conv'


@dataclass(frozen=True)
class Invalid:
    """One bad constructor call: ``args`` over the entry's ``valid_args``
    must raise a ``ValueError`` whose message contains ``match``."""
    args: Dict[str, Any]
    match: str


def bad(name: str, value: Any, **other: Any) -> Invalid:
    """The usual case: one bad argument, named with its value in the
    message as ``name=value!r``; ``other`` arguments change alongside."""
    return Invalid(dict(other, **{name: value}), f'{name}={value!r}')


@dataclass(frozen=True)
class BlockEntry:
    """What the shared tests and tools need to know about one block type.

    Attributes:
        cls (type): The registered class (its name is the config ``type``).
        kind (str): :data:`PLUGIN` or :data:`CONV`.
        label (str): Short name for tables and pictures, e.g. ``'GC'``.
        examples (dict): Variant name -> constructor arguments besides the
            channels; the first is the block's usual configuration, used
            where one example is enough (placement in ResNet and FPN).
        valid_args (dict): A complete valid constructor call (channels
            included) that :attr:`invalid` cases modify.
        invalid (tuple[Invalid]): Bad calls and the text their error names.
        onnx (bool): Exports to ONNX and matches PyTorch in onnxruntime.
        query_independent (bool): Its attention map is the same for every
            query (GC); the analysis draws one picture instead of one per
            query.
    """
    cls: Type[nn.Module]
    kind: str
    label: str
    examples: Mapping[str, dict]
    valid_args: Mapping[str, Any]
    invalid: Tuple[Invalid, ...] = ()
    onnx: bool = True
    query_independent: bool = False

    @property
    def type(self) -> str:
        """The registry name, the ``type`` of a config dict."""
        return self.cls.__name__

    @property
    def abbr(self) -> Optional[str]:
        """Module name a plugin host gives it (None for conv layers)."""
        return getattr(self.cls, '_abbr_', None)

    @property
    def has_attention_maps(self) -> bool:
        """Whether it defines ``attention_maps(x, queries)``."""
        return callable(getattr(self.cls, 'attention_maps', None))

    def config(self, variant: Optional[str] = None) -> dict:
        """``dict(type=..., **arguments)`` of a variant (default: the
        first), as a ``plugins=`` or conv config."""
        variant = next(iter(self.examples)) if variant is None else variant
        return dict(type=self.type, **self.examples[variant])

    def build(self, channels: int, variant: Optional[str] = None) -> nn.Module:
        """The block for a ``channels``-channel map (a conv layer keeps the
        width: ``channels`` out)."""
        cfg = self.config(variant)
        cfg.pop('type')
        if self.kind == CONV:
            return self.cls(channels, channels, **cfg)
        return self.cls(channels, **cfg)


_NL_MODES = ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation')

CATALOGUE: Tuple[BlockEntry, ...] = (
    BlockEntry(
        GCBlock,
        PLUGIN,
        'GC',
        examples={
            'add':
            dict(ratio=1 / 16),
            'avg':
            dict(ratio=1 / 4, pooling_type='avg'),
            'add_mul':
            dict(ratio=1 / 4, fusion_types=('channel_add', 'channel_mul')),
        },
        valid_args=dict(in_channels=16, ratio=1 / 4),
        invalid=(bad('ratio', 0), bad('ratio', -0.5), bad('ratio', 1 / 32),
                 bad('pooling_type', 'max'), bad('transform', 'mlp')),
        query_independent=True),
    BlockEntry(
        SEBlock,
        PLUGIN,
        'SE',
        examples={
            'r16': dict(ratio=1 / 16),
            'r4': dict(ratio=1 / 4)
        },
        valid_args=dict(in_channels=16),
        invalid=(bad('in_channels', 0), bad('ratio', 0), bad('ratio', -1 / 16),
                 bad('ratio', 1 / 32), bad('act_cfg', 'ReLU'))),
    BlockEntry(
        NLBlock,
        PLUGIN,
        'NL',
        examples={
            f'{mode}{"_sub" if sub else ""}':
            (dict(mode=mode, sub_sample=True) if sub else dict(mode=mode))
            for mode in _NL_MODES
            for sub in (False, True)
        },
        valid_args=dict(in_channels=16),
        invalid=(bad('in_channels', -3), bad('reduction',
                                             0), bad('reduction', 1.5),
                 bad('mode', 'softmax'), bad('std',
                                             0), bad('use_scale', 'yes'))),
    BlockEntry(
        SASABlock,
        PLUGIN,
        'SASA',
        examples={
            'k3': dict(kernel_size=3, num_heads=8),
            'k7': dict(kernel_size=7, num_heads=4)
        },
        valid_args=dict(in_channels=16, num_heads=2),
        invalid=(bad('kernel_size', 6), bad('num_heads',
                                            5), bad('in_channels', 10))),
    BlockEntry(
        SASAConv,
        CONV,
        'SASA',
        examples={
            'k7': dict(kernel_size=7, num_heads=4),
            'k3_s2': dict(kernel_size=3, stride=2, num_heads=4),
            'k7_s2': dict(kernel_size=7, stride=2, num_heads=4)
        },
        valid_args=dict(in_channels=8, out_channels=16, num_heads=2),
        invalid=(
            bad('kernel_size', 4),
            bad('kernel_size', (3, 4)),
            bad('num_heads', 3),
            bad('num_heads', 0),
            # 24 / 8 heads: 3 channels per head, odd
            bad('out_channels', 24, num_heads=8),
            bad('dilation', 2),
            bad('groups', 2),
            bad('padding', 1),
            bad('stride', 0),
            bad('window_size', 6),
            bad('block_size', 0))),
    BlockEntry(
        CBAMBlock,
        PLUGIN,
        'CBAM',
        examples={
            'r16': dict(ratio=1 / 16),
            'r4_k3': dict(ratio=1 / 4, kernel_size=3)
        },
        valid_args=dict(in_channels=16),
        invalid=(bad('in_channels', 0), bad('ratio', 0), bad('ratio', 1 / 32),
                 bad('kernel_size', 4), bad('kernel_size', 0))),
)


def entries(kind: Optional[str] = None) -> List[BlockEntry]:
    """The catalogue's entries, optionally only those of one kind."""
    return [e for e in CATALOGUE if kind is None or e.kind == kind]


def entry_of(module: nn.Module) -> Optional[BlockEntry]:
    """The entry of a module's exact class, or None for other modules."""
    return next((e for e in CATALOGUE if type(module) is e.cls), None)


def examples() -> Dict[str, Tuple[BlockEntry, str]]:
    """Every example of every block: ``'{type}-{variant}'`` -> (entry,
    variant), the ids of the catalogue-driven tests."""
    return {
        f'{e.type}-{variant}': (e, variant)
        for e in CATALOGUE
        for variant in e.examples
    }

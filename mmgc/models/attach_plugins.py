"""Any mmgc block after any submodule of any registered backbone or neck.

MMDetection has plugin hooks in ResNet/ResNeXt only. ``AttachPlugins``
builds any registered module (RegNet, Res2Net, ResNeSt, HRNet, CSPDarknet,
Swin, PVT, FPN, ...) from its own arguments and attaches blocks chosen by
module-path patterns::

    backbone=dict(
        type='AttachPlugins',
        base_type='RegNet',              # what to build; every key other
        arch='regnetx_3.2gf',            # than type/base_type/attach/
        out_indices=(0, 1, 2, 3),        # probe_size is RegNet's own
        attach=[
            # GC after the last norm of every block of stages 2-4 (where
            # mmdet's 'after_conv3' puts it in a bottleneck)
            dict(cfg=dict(type='GCBlock', ratio=1 / 16),
                 after='layer[234].*.bn3'),
        ])

Each ``attach`` entry has a plugin ``cfg`` and either

* ``after``: a module-path pattern or a list of them
  (:mod:`~mmgc.models.utils.module_paths`: ``*`` within one dotted
  component, ``**`` across dots); the block runs on the output of every
  matched module, which must be an NCHW map ``[B, C, H, W]``; or
* ``outputs``: indices into the tuple the module returns -- for
  backbones whose internal tensors are tokens (Swin, PVT), whose NCHW maps
  exist only as their stage outputs.

``in_channels`` of each block is read from one dry forward pass in eval
mode, without gradients, of a ``probe_size`` input (a backbone: ``[1,
in_channels, s, s]``; a neck with a list ``in_channels``: one map per
level, halving ``s``). The probe also refuses a matched module that does
not run exactly once per forward pass (shared modules such as a block's
``relu``).

What comes back is the built module itself (``RegNet``, ...), its own
submodules and state-dict keys unchanged, so its pretrained weights load
(``init_cfg`` / ``load_from``) with only the blocks' keys missing. The
blocks live in one new child, ``attached_plugins``, whose tree mirrors the
places, with mmdet's plugin names (``<abbr><postfix>``):
``attached_plugins.layer2.0.bn3.context_block`` runs after ``layer2.0.bn3``
(a forward hook), ``attached_plugins.outputs.2.context_block`` on output 2.
Keeping them out of the matched modules keeps those modules' own children
as they were (an ``nn.Sequential`` runs every child), and
``frozen_stages`` does not freeze them. Several entries at one place run in
entry order; two of one type there need distinct ``postfix`` values in
``cfg``.
"""
import inspect
from functools import partial
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import torch
from mmcv.cnn.bricks.plugin import infer_abbr
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from mmengine.registry import MODELS as ROOT_MODELS
from torch import Tensor, nn

from .utils.module_paths import match_module_paths
from .utils.output_plugins import add_plugin
from .utils.placement import check_plugin_entry
from .utils.validation import ArgumentError, _is_int, check_positive_int

ATTACH_KEYS = ('cfg', 'after', 'outputs')
#: Child of the built module that holds the attached blocks.
CONTAINER = 'attached_plugins'


class PluginSlot(BaseModule):
    """The blocks of one place, in run order (``plugin_names``); a
    ``BaseModule``, so their own ``init_weights`` (zero-initialised last
    convs) runs after the backbone's ``init_cfg``."""

    def __init__(self) -> None:
        super().__init__()
        self.plugin_names: List[str] = []
        self.hooked = False  # whether the place's forward hook is set

    def forward(self, x: Tensor) -> Tensor:
        """Run the blocks in order on ``x`` ``[B, C, H, W]``."""
        for name in self.plugin_names:
            x = getattr(self, name)(x)  # [B, C, H, W]
        return x


def _run_slot(slot: PluginSlot, module: nn.Module, args: Tuple,
              output: Tensor) -> Tensor:
    """Forward hook of a matched module: its output through its slot."""
    return slot(output)


def _run_output_slots(slots: nn.Module, module: nn.Module, args: Tuple,
                      output: Sequence[Tensor]) -> Sequence[Tensor]:
    """Forward hook of the built module: chosen outputs through their
    slots (``slots.<index>``)."""
    outs = list(output)
    for index, slot in slots.named_children():
        outs[int(index)] = slot(outs[int(index)])  # [B, C_i, H_i, W_i]
    return type(output)(outs)


def _slot(module: nn.Module, path: Sequence[str]) -> PluginSlot:
    """The slot at ``attached_plugins.<path>`` of ``module``, made (with
    the slots on the way, empty ones pass their input through) if needed.
    """
    node = module
    for part in (CONTAINER, *path):
        if part not in node._modules:
            node.add_module(part, PluginSlot())
        node = node._modules[part]
    return node


def _record_output(calls: List[Any], module: nn.Module, args: Tuple,
                   output: Any) -> None:
    """Forward hook of the probe: keep what ``module`` returned."""
    calls.append(output)


def probe_input(module: nn.Module, size: int) -> Tuple[Any, ...]:
    """Positional arguments of a dry forward pass of ``module``.

    Args:
        module (nn.Module): A backbone (``in_channels`` an int, default 3)
            or a neck (``in_channels`` a list: one map per level).
        size (int): Side of the (first) input map.

    Returns:
        tuple: ``([1, C, s, s], )`` or ``(([1, C_0, s, s], [1, C_1, s/2,
        s/2], ...), )``, random from a fixed local generator (the global
        RNG, and so the blocks' initialisation, is not touched).
    """
    generator = torch.Generator().manual_seed(0)
    param = next(module.parameters(), None)
    device = param.device if param is not None else 'cpu'
    channels = getattr(module, 'in_channels', 3)
    if isinstance(channels, (list, tuple)):
        return ([
            torch.randn(
                1,
                c,
                max(size >> i, 1),
                max(size >> i, 1),
                generator=generator).to(device) for i, c in enumerate(channels)
        ], )
    channels = channels if _is_int(channels) else 3
    return (torch.randn(1, channels, size, size,
                        generator=generator).to(device), )


def probe_outputs(module: nn.Module, names: Sequence[str],
                  size: int) -> Tuple[Dict[str, List[Any]], Any]:
    """Run ``module`` once in eval mode without gradients and record the
    outputs of the named submodules.

    Args:
        module (nn.Module): The module to probe; its training mode is
            restored afterwards and nothing in it changes (eval mode keeps
            BatchNorm statistics).
        names (Sequence[str]): Submodule names.
        size (int): Input size (see :func:`probe_input`).

    Returns:
        tuple: ``{name: [output of each call]}`` and the module's output.
    """
    calls: Dict[str, List[Any]] = {name: [] for name in names}
    handles = [
        module.get_submodule(name).register_forward_hook(
            partial(_record_output, calls[name])) for name in names
    ]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            output = module(*probe_input(module, size))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return calls, output


def _nchw_channels(key: str, where: str, value: Any, owner: str) -> int:
    """Channels of an NCHW map, or an :class:`ArgumentError` saying what
    ``where`` gave instead."""
    if isinstance(value, Tensor) and value.dim() == 4:
        return int(value.shape[1])
    got = (f'a tensor of shape {tuple(value.shape)}' if isinstance(
        value, Tensor) else f'a {type(value).__name__}')
    raise ArgumentError(
        f'{owner}: {key}: {where} gives {got}, not an NCHW map [B, C, H, '
        f'W], which mmgc\'s blocks take. Token backbones (Swin, PVT): '
        f'place blocks on their NCHW stage outputs with outputs=(...) '
        f'instead of after=')


def _check_entry(key: str, entry: Any, names: Sequence[str],
                 owner: str) -> Union[List[str], Tuple[int, ...]]:
    """Check one ``attach`` entry; return its module names (``after``) or
    output indices (``outputs``)."""
    check_plugin_entry(key, entry, None, ATTACH_KEYS, owner)
    if ('after' in entry) == ('outputs' in entry):
        raise ArgumentError(
            f'{owner}: {key} needs exactly one of after= (module-path '
            f"patterns, e.g. 'stages.2.*') and outputs= (indices of the "
            f'returned maps, e.g. (1, 2, 3)); got keys {sorted(entry)}')
    if 'after' in entry:
        return match_module_paths(f'{key}.after', entry['after'], names, owner)
    outputs = entry['outputs']
    if not isinstance(outputs, (list, tuple)) or not outputs or not all(
            _is_int(i) and i >= 0 for i in outputs) or \
            len(set(outputs)) != len(outputs):
        raise ArgumentError(
            f'{owner}: {key}.outputs={outputs!r} must be a non-empty tuple '
            f'of distinct output indices (ints >= 0), e.g. (1, 2, 3)')
    return tuple(outputs)


def attach_plugins(module: nn.Module,
                   attach: Sequence[Mapping],
                   probe_size: int = 64,
                   owner: str = '') -> List[str]:
    """Attach mmgc blocks to ``module`` as ``attach`` says (module doc).

    Everything is checked and probed before the first block is built: a
    bad entry leaves ``module`` as it was.

    Args:
        module (nn.Module): A built backbone or neck.
        attach (Sequence[Mapping]): Entries with ``cfg`` and ``after`` or
            ``outputs``.
        probe_size (int): Side of the probe input. Default: 64.
        owner (str): Name for messages; default
            ``'AttachPlugins(<class>)'``.

    Returns:
        list[str]: Full names of the new blocks (``'attached_plugins.
        layer2.0.bn3.context_block'``, ``'attached_plugins.outputs.2.
        context_block'``), in entry order.
    """
    owner = owner or f'AttachPlugins({type(module).__name__})'
    check_positive_int('probe_size', probe_size, owner)
    if not isinstance(attach, (list, tuple)) or not attach:
        raise ArgumentError(
            f'{owner}: attach={attach!r} must be a non-empty list of dicts '
            f"like dict(cfg=dict(type='GCBlock', ratio=1 / 16), "
            f"after='stages.2.*')")
    names = [name for name, _ in module.named_modules() if name]
    targets = [
        _check_entry(f'attach[{i}]', entry, names, owner)
        for i, entry in enumerate(attach)
    ]
    probed = sorted({n for t in targets if isinstance(t, list) for n in t})
    calls, output = probe_outputs(module, probed, probe_size)
    channels: Dict[Any, int] = {}
    for i, target in enumerate(targets):
        key = f'attach[{i}]'
        if isinstance(target, list):
            for name in target:
                if len(calls[name]) != 1:
                    raise ArgumentError(
                        f'{owner}: {key}.after matches {name!r}, which runs '
                        f'{len(calls[name])} times per forward pass; a '
                        f'block there would run after each call. Allowed: '
                        f'modules that run once (e.g. its parent block)')
                channels[name] = _nchw_channels(key, f'module {name!r}',
                                                calls[name][0], owner)
            continue
        if not isinstance(output, (list, tuple)):
            raise ArgumentError(
                f'{owner}: {key}.outputs={target!r} needs a module that '
                f'returns a tuple of maps; it returns a '
                f'{type(output).__name__}. Allowed: after=')
        for index in target:
            if index >= len(output):
                raise ArgumentError(
                    f'{owner}: {key}.outputs={target!r}: index {index} is '
                    f'out of range for {len(output)} outputs; allowed: 0 .. '
                    f'{len(output) - 1}')
            channels[index] = _nchw_channels(key, f'output {index}',
                                             output[index], owner)
    _check_names(module, attach, targets, owner)
    placed: List[str] = []
    for entry, target in zip(attach, targets):
        for place in target:
            if isinstance(place, str):
                slot = _slot(module, place.split('.'))
                hooked, host, hook = slot, module.get_submodule(place), \
                    partial(_run_slot, slot)
            else:
                slot = _slot(module, ('outputs', str(place)))
                hooked = _slot(module, ('outputs', ))
                host, hook = module, partial(_run_output_slots, hooked)
            if not hooked.hooked:
                host.register_forward_hook(hook)
                hooked.hooked = True
            name = add_plugin(slot, entry['cfg'], channels[place], owner)
            slot.plugin_names.append(name)
            placed.append(f'{CONTAINER}.{slot_path(place)}.{name}')
    return placed


def _check_names(module: nn.Module, attach: Sequence[Mapping],
                 targets: Sequence[Any], owner: str) -> None:
    """Refuse, before anything is built, two blocks of one name at one
    place (mmdet's naming: ``<abbr><postfix>``)."""
    taken: Dict[str, List[str]] = {}
    for entry, target in zip(attach, targets):
        cfg = entry['cfg']
        with ROOT_MODELS.switch_scope_and_registry(None) as registry:
            cls = (
                cfg['type']
                if inspect.isclass(cfg['type']) else registry.get(cfg['type']))
        name = infer_abbr(cls) + str(cfg.get('postfix', ''))
        for place in target:
            path = f'{CONTAINER}.{slot_path(place)}'
            if path not in taken:
                try:
                    taken[path] = list(module.get_submodule(path).plugin_names)
                except AttributeError:  # no slot there yet
                    taken[path] = []
            if name in taken[path]:
                raise ArgumentError(
                    f'{owner}: plugin name {name!r} is already taken in '
                    f'{path}; give the plugin cfg a distinct postfix, e.g. '
                    f"dict(type={cfg['type']!r}, postfix='_2')")
            taken[path].append(name)


def slot_path(place: Union[str, int]) -> str:
    """Path of a place's slot below ``attached_plugins``: the module name,
    or ``outputs.<index>``."""
    return place if isinstance(place, str) else f'outputs.{place}'


@MODELS.register_module(name='AttachPlugins')
def build_with_plugins(base_type: Union[str, type],
                       attach: Sequence[Mapping],
                       probe_size: int = 64,
                       **kwargs: Any) -> nn.Module:
    """Registered as ``'AttachPlugins'``: build ``base_type`` from
    ``kwargs`` and attach ``attach`` (see the module docstring).

    Args:
        base_type (str | type): A registered backbone or neck, e.g.
            ``'RegNet'``, ``'SwinTransformer'``, ``'FPN'``.
        attach (Sequence[Mapping]): Plugin entries.
        probe_size (int): Side of the probe input. Default: 64.
        **kwargs: ``base_type``'s own arguments.

    Returns:
        nn.Module: The ``base_type`` instance, with the blocks attached.
    """
    module = MODELS.build(dict(type=base_type, **kwargs))
    attach_plugins(module, attach, probe_size)
    return module

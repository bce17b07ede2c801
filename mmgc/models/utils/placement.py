"""Checks of placement specs: where plugins go in a backbone or neck.

Shared by :class:`~mmgc.models.backbones.PluginResNet` (``stages``,
``blocks``) and :class:`~mmgc.models.necks.PluginFPN` (``levels``). Every
error is a ``ValueError`` that names the owner class, the key, the bad value
and what is allowed.
"""
import difflib
import inspect
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from mmengine.registry import MODELS

from .validation import _is_int, check_choice


def check_flags(name: str, value: Any, length: int, unit: str,
                owner: str) -> Tuple[bool, ...]:
    """Normalise a per-stage / per-level switch such as mmdet's ``stages``.

    Args:
        name (str): Key for the message, e.g. ``'plugins[0].stages'``.
        value: ``None`` (every entry on) or a tuple/list of ``length`` bools.
        length (int): Number of stages or levels.
        unit (str): What one flag stands for, e.g. ``'stage'``.
        owner (str): Class that received it, for the message.

    Returns:
        tuple[bool, ...]: ``length`` flags.
    """
    if value is None:
        return (True, ) * length
    if not isinstance(value, (tuple, list)) or len(value) != length or \
            not all(isinstance(v, bool) for v in value):
        raise ValueError(
            f'{owner}: {name}={value!r} must be None (all) or a tuple of '
            f'{length} bools, one per {unit}')
    return tuple(value)


def resolve_indices(name: str, value: Any, length: int,
                    owner: str) -> Tuple[int, ...]:
    """Normalise a selection of ``length`` items (e.g. the blocks of a stage).

    Args:
        name (str): Key for the message, e.g. ``'plugins[0].blocks[2]'``.
        value: ``None`` or ``'all'`` (every item) or a tuple/list of distinct
            ints in ``[-length, length)``; negative indices count from the
            end as in Python (``-2`` is the last-but-one item).
        length (int): Number of items.
        owner (str): Class that received it, for the message.

    Returns:
        tuple[int, ...]: The selected indices, non-negative and ascending.
    """
    if value is None or value == 'all':
        return tuple(range(length))
    if not isinstance(value, (tuple, list)) or not value or \
            not all(_is_int(v) for v in value):
        raise ValueError(
            f"{owner}: {name}={value!r} must be None, 'all' or a non-empty "
            f'tuple of block indices (ints in [{-length}, {length - 1}])')
    for index in value:
        if not -length <= index < length:
            raise ValueError(
                f'{owner}: {name}={value!r}: index {index} is out of range '
                f'for {length} items; allowed: {-length} .. {length - 1}')
    resolved = [index % length for index in value]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f'{owner}: {name}={value!r} selects an item twice')
    return tuple(sorted(resolved))


def check_plugin_entry(name: str, plugin: Any, positions: Iterable[str],
                       keys: Iterable[str], owner: str) -> None:
    """Check one entry of a ``plugins`` list: a dict with a ``cfg`` dict
    that has a ``type``, a known ``position`` and no unknown keys.

    Args:
        name (str): Key for the message, e.g. ``'plugins[1]'``.
        plugin: The entry.
        positions (Iterable[str]): Allowed values of ``position``.
        keys (Iterable[str]): Allowed keys of the entry (``cfg`` and
            ``position`` included).
        owner (str): Class that received it, for the message.
    """
    keys = tuple(keys)
    if not isinstance(plugin, Mapping):
        raise ValueError(f'{owner}: {name}={plugin!r} must be a dict with '
                         f'keys {keys}')
    unknown = sorted(set(plugin) - set(keys))
    if unknown:
        raise ValueError(f'{owner}: {name} has unknown key(s) {unknown}; '
                         f'allowed: {", ".join(keys)}')
    cfg: Optional[Any] = plugin.get('cfg')
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise ValueError(f'{owner}: {name}.cfg={cfg!r} must be a dict with '
                         f'a "type" (e.g. dict(type=\'GCBlock\', ratio=1/16))')
    check_plugin_type(f'{name}.cfg.type', cfg['type'], owner)
    check_choice(f'{name}.position', plugin.get('position'), positions, owner)


def check_plugin_type(name: str, layer_type: Any, owner: str) -> None:
    """Raise ``ValueError`` unless mmcv's ``build_plugin_layer`` can find
    ``layer_type``; the message lists the registered plugin blocks (classes
    with an ``_abbr_``: the default scope's -- mmdet's, i.e. mmgc's --
    first, then mmcv's) and the closest name.

    mmcv 2.1's own error for an unknown type reads ``Cannot find None in
    registry``.

    Args:
        name (str): Key for the message, e.g. ``'plugins[0].cfg.type'``.
        layer_type: A registered name or a class.
        owner (str): Class that received it, for the message.
    """
    if inspect.isclass(layer_type):
        return
    # The registry and scope build_plugin_layer looks the type up in.
    with MODELS.switch_scope_and_registry(None) as registry:
        if isinstance(layer_type, str) and \
                registry.get(layer_type) is not None:
            return
        known: List[str] = []
        while registry is not None:  # the scope's registry, then parents
            known += sorted(
                key for key, cls in registry.module_dict.items()
                if inspect.isclass(cls) and hasattr(cls, '_abbr_'))
            registry = registry.parent
    close = difflib.get_close_matches(str(layer_type), known, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ValueError(
        f'{owner}: {name}={layer_type!r} is not a registered plugin '
        f'block{hint}; allowed: {", ".join(map(repr, known))}. mmgc\'s '
        f"blocks need custom_imports=dict(imports=['mmgc']) in the config")

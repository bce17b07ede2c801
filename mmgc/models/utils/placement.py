"""Checks of placement specs: where plugins go in a backbone or neck.

Shared by :class:`~mmgc.models.backbones.PluginResNet` (``stages``,
``blocks``), :class:`~mmgc.models.necks.PluginFPN` (``levels``) and
:func:`~mmgc.models.utils.attach.attach_plugins` (module paths). Every error
is an :class:`~mmgc.models.utils.validation.ArgumentError` (a ``ValueError``
and the ``AssertionError`` mmdet raises for the same mistake) that names the
owner class, the key, the bad value and what is allowed.
"""
import difflib
import inspect
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from mmengine.registry import MODELS

from .validation import ArgumentError, ArgumentKeyError, _is_int, check_choice


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
        raise ArgumentError(
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
        raise ArgumentError(
            f"{owner}: {name}={value!r} must be None, 'all' or a non-empty "
            f'tuple of block indices (ints in [{-length}, {length - 1}])')
    for index in value:
        if not -length <= index < length:
            raise ArgumentError(
                f'{owner}: {name}={value!r}: index {index} is out of range '
                f'for {length} items; allowed: {-length} .. {length - 1}')
    resolved = [index % length for index in value]
    if len(set(resolved)) != len(resolved):
        raise ArgumentError(f'{owner}: {name}={value!r} selects an item twice')
    return tuple(sorted(resolved))


def check_plugin_entry(name: str, plugin: Any,
                       positions: Optional[Iterable[str]], keys: Iterable[str],
                       owner: str) -> None:
    """Check one entry of a ``plugins`` list: a dict with a ``cfg`` dict
    that has a registered ``type``, a known ``position`` and no unknown keys.

    Args:
        name (str): Key for the message, e.g. ``'plugins[1]'``.
        plugin: The entry.
        positions (Iterable[str], optional): Allowed values of
            ``position``; None: the entry has no ``position``.
        keys (Iterable[str]): Allowed keys of the entry (``cfg`` and
            ``position`` included).
        owner (str): Class that received it, for the message.
    """
    keys = tuple(keys)
    if not isinstance(plugin, Mapping):
        raise ArgumentError(f'{owner}: {name}={plugin!r} must be a dict with '
                            f'keys {keys}')
    unknown = sorted(set(plugin) - set(keys))
    if unknown:
        raise ArgumentError(f'{owner}: {name} has unknown key(s) {unknown}; '
                            f'allowed: {", ".join(keys)}')
    cfg: Optional[Any] = plugin.get('cfg')
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise ArgumentError(f'{owner}: {name}.cfg={cfg!r} must be a dict '
                            f'with a "type" (e.g. dict(type=\'GCBlock\', '
                            f'ratio=1/16))')
    check_plugin_type(f'{name}.cfg.type', cfg['type'], owner)
    if positions is not None:
        check_choice(f'{name}.position', plugin.get('position'), positions,
                     owner)


def check_plugin_type(name: str, layer_type: Any, owner: str) -> None:
    """Raise :class:`ArgumentKeyError` (``KeyError``, as mmcv's
    ``build_plugin_layer``) unless ``layer_type`` can be built: the message
    lists the registered plugin blocks (classes with an ``_abbr_``: the
    default scope's first, then its parents') and the closest name.

    mmcv 2.1's own error for an unknown type reads ``Cannot find None in
    registry``. mmgc's blocks are registered in every scope (see
    :mod:`~mmgc.models.utils.scope`), so the ``custom_imports`` hint is
    given only for one of their names that is not registered, i.e. when
    mmgc's models were never imported.

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
            known += sorted(key for key, cls in registry.module_dict.items()
                            if inspect.isclass(cls) and hasattr(cls, '_abbr_')
                            and key not in known)
            registry = registry.parent
    close = difflib.get_close_matches(str(layer_type), known, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    message = (f'{owner}: {name}={layer_type!r} is not a registered plugin '
               f'block{hint}; allowed: {", ".join(map(repr, known))}')
    # imported here: the catalogue imports the blocks, which import this
    from ..catalogue import PLUGIN, entries
    if layer_type in [entry.type for entry in entries(PLUGIN)]:
        message += (". mmgc's blocks need import mmgc, or "
                    "custom_imports=dict(imports=['mmgc']) in the config")
    raise ArgumentKeyError(message)

"""Argument checks that name the owner class, the argument, the bad value
and what is allowed.

Their errors are of mmgc's own types, which are also the types mmcv and
mmdet raise for the same mistake (they ``assert``, or raise ``KeyError``
for an unknown ResNet depth), so code and tests written against
``ContextBlock`` / ``NonLocal2d`` / ``ResNet`` that catch those keep
working, and code that catches ``ValueError`` works too.
"""
from typing import Any, Iterable, Tuple, Union

IntOrPair = Union[int, Tuple[int, int]]


class ArgumentError(ValueError, AssertionError):
    """A bad argument: a ``ValueError`` whose message names the owner, the
    argument, the bad value and what is allowed, and an ``AssertionError``,
    the type mmcv's blocks and mmdet's backbones raise for it."""


class ArgumentKeyError(ArgumentError, KeyError):
    """A bad argument that mmdet reports as ``KeyError`` (e.g. an unknown
    ResNet ``depth``, an unregistered plugin type in mmcv's
    ``build_plugin_layer``); the message reads as given, not quoted."""

    __str__ = BaseException.__str__


def check_choice(name: str, value: Any, allowed: Iterable[Any],
                 owner: str) -> None:
    """Raise :class:`ArgumentError` unless ``value`` is one of ``allowed``.

    Args:
        name (str): Argument name, e.g. ``'pooling_type'``.
        value: The value given.
        allowed: The accepted values.
        owner (str): Class that received it, for the message.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ArgumentError(f'{owner}: {name}={value!r} is not supported; '
                            f'allowed: {", ".join(repr(a) for a in allowed)}')


def check_positive(name: str, value: Any, owner: str) -> None:
    """Raise :class:`ArgumentError` unless ``value`` is a number > 0.

    Args:
        name (str): Argument name, e.g. ``'ratio'``.
        value: The value given.
        owner (str): Class that received it, for the message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not value > 0:
        raise ArgumentError(f'{owner}: {name}={value!r} must be a number > 0')


def _is_int(value: Any) -> bool:
    """True for ints, False for bools (which Python counts as ints)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any, owner: str) -> None:
    """Raise :class:`ArgumentError` unless ``value`` is an ``int`` >= 1.

    Args:
        name (str): Argument name, e.g. ``'num_heads'``.
        value: The value given.
        owner (str): Class that received it, for the message.
    """
    if not _is_int(value) or value < 1:
        raise ArgumentError(f'{owner}: {name}={value!r} must be an int >= 1')


def to_int_pair(name: str, value: Any, owner: str) -> Tuple[int, int]:
    """Normalise an ``nn.Conv2d``-style size (``int`` or pair of ints >= 1)
    to ``(height, width)``.

    Args:
        name (str): Argument name, e.g. ``'kernel_size'``.
        value: ``int`` or length-2 tuple/list of ints.
        owner (str): Class that received it, for the message.

    Returns:
        tuple[int, int]: ``(value_h, value_w)``.
    """
    pair = (value, value) if _is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(
            _is_int(v) and v >= 1 for v in pair):
        raise ArgumentError(f'{owner}: {name}={value!r} must be an int >= 1 '
                            f'or a pair of such ints')
    return int(pair[0]), int(pair[1])


def check_odd(name: str, value: IntOrPair, owner: str) -> None:
    """Raise :class:`ArgumentError` unless ``value`` (``int`` or pair) is
    odd, e.g. a window that must be centred on its query.

    Args:
        name (str): Argument name, e.g. ``'kernel_size'``.
        value: ``int`` or pair of ints (already validated as positive).
        owner (str): Class that received it, for the message.
    """
    pair = (value, value) if _is_int(value) else tuple(value)
    if any(v % 2 == 0 for v in pair):
        raise ArgumentError(f'{owner}: {name}={value!r} must be odd (a window '
                            f'centred on its query)')


def check_reduced_channels(in_channels: int, ratio: float, owner: str) -> int:
    """Channels of a ``ratio`` bottleneck, ``int(in_channels * ratio)``;
    raise :class:`ArgumentError` if that leaves none.

    Args:
        in_channels (int): Channels entering the bottleneck.
        ratio (float): Bottleneck width as a fraction of ``in_channels``.
        owner (str): Class that received them, for the message.

    Returns:
        int: The bottleneck width, at least 1.
    """
    channels = int(in_channels * ratio)
    if channels < 1:
        raise ArgumentError(
            f'{owner}: ratio={ratio!r} leaves int(in_channels * ratio) = '
            f'{channels} channels for in_channels={in_channels}; need at '
            f'least 1, i.e. allowed: ratio >= 1/{in_channels}')
    return channels

"""Argument checks that name the argument, the bad value and what is allowed."""
from typing import Any, Iterable


def check_choice(name: str, value: Any, allowed: Iterable[Any],
                 owner: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``.

    Args:
        name (str): Argument name, e.g. ``'pooling_type'``.
        value: The value given.
        allowed: The accepted values.
        owner (str): Class that received it, for the message.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f'{owner}: {name}={value!r} is not supported; '
                         f'allowed: {", ".join(repr(a) for a in allowed)}')


def check_positive(name: str, value: Any, owner: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a number greater than 0.

    Args:
        name (str): Argument name, e.g. ``'ratio'``.
        value: The value given.
        owner (str): Class that received it, for the message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not value > 0:
        raise ValueError(f'{owner}: {name}={value!r} must be a number > 0')

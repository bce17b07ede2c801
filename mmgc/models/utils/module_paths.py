"""Module-path patterns: pick submodules by their dotted names.

A pattern is matched against the names ``nn.Module.named_modules()`` gives
(``'stages.2.0.conv1'``), whole name against whole pattern:

* ``*`` matches within one path component (no dot): ``'stages.2.*'`` is
  every direct child of ``stages.2`` (each block of stage 2), not their
  children;
* ``**`` matches any number of components, dots included:
  ``'stages.**.conv3'`` is every ``conv3`` below ``stages``;
* ``?`` matches one character of a component, ``[...]`` one of a set
  (``'layer[234].*'``).
"""
import difflib
import re
from typing import List, Pattern, Sequence, Union

from .validation import ArgumentError

Patterns = Union[str, Sequence[str]]


def compile_pattern(pattern: str) -> Pattern:
    """Regular expression of a module-path pattern (see the module doc).

    Args:
        pattern (str): e.g. ``'layer[234].*.bn3'``.

    Returns:
        Pattern: Matches whole module names.
    """
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith('**', i):
            out.append('.*')
            i += 2
            continue
        if char == '*':
            out.append('[^.]*')
        elif char == '?':
            out.append('[^.]')
        elif char == '[':
            end = pattern.find(']', i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                out.append(pattern[i:end + 1].replace('[!', '[^', 1))
                i = end + 1
                continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile(''.join(out) + r'\Z')


def match_module_paths(key: str, patterns: Patterns, names: Sequence[str],
                       owner: str) -> List[str]:
    """The names matching ``patterns``, in the order of ``names``.

    Args:
        key (str): Key for the message, e.g. ``'attach[0].after'``.
        patterns (str | Sequence[str]): One pattern or a list of them (a
            plain module name is a pattern that matches itself).
        names (Sequence[str]): Candidate module names, in model order.
        owner (str): What places the plugins, for the message.

    Returns:
        list[str]: Matched names, each once, in model order.

    Raises:
        ArgumentError: if ``patterns`` is not a string or a non-empty list of
            strings, or one of them matches no module (the message names the
            closest module names).
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, (list, tuple)) or not patterns or \
            not all(isinstance(p, str) and p for p in patterns):
        raise ArgumentError(
            f'{owner}: {key}={patterns!r} must be a module-path pattern or '
            f"a non-empty list of them, e.g. 'stages.2.*' or "
            f"['layer1.0', 'layer2.3']")
    chosen = set()
    for pattern in patterns:
        regex = compile_pattern(pattern)
        hits = [name for name in names if regex.match(name)]
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3)
            raise ArgumentError(
                f'{owner}: {key} pattern {pattern!r} matches no module; '
                f'closest module names: {close or list(names[:3])} ('
                f"'*' stays within one dotted component, '**' crosses dots)")
        chosen.update(hits)
    return [name for name in names if name in chosen]

"""Make mmengine checkpoints loadable under torch's ``weights_only`` default.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and refuses
to unpickle anything but tensors and plain containers. mmengine 0.10.7 calls
``torch.load`` without the argument, and its checkpoints carry the message
hub's ``HistoryBuffer`` objects (whose state holds references to its
statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``) and numpy
arrays and scalars, so ``--resume`` and ``load_from`` fail with
``Unsupported global``.

Rather than turning safety off (``weights_only=False`` everywhere), this
module allow-lists exactly what mmengine writes, with
``torch.serialization.add_safe_globals``. ``builtins.getattr`` is *not*
allowed as such: it is replaced, for the weights-only unpickler only, by
:func:`history_buffer_attribute`, which resolves nothing but
``HistoryBuffer``'s registered statistics methods. Everything else still
fails. It runs once, on ``import mmgc``.
"""
import pickle
from typing import Any, Callable, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# HistoryBuffer's built-in statistics (its class dict fills lazily, at the
# first instance) plus any registered with HistoryBuffer.register_statistics.
_BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')


def _statistics_names() -> List[str]:
    return sorted(
        set(_BUILTIN_STATISTICS)
        | set(HistoryBuffer._statistics_methods))


def history_buffer_attribute(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to ``HistoryBuffer``'s statistics methods.

    Args:
        obj: The object the pickle asks an attribute of.
        name (str): The attribute name.

    Returns:
        Callable: ``getattr(HistoryBuffer, name)``.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    if obj is HistoryBuffer and name in _statistics_names():
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights-only load: getattr({obj!r}, {name!r}) is not allowed; '
        'mmgc only allows HistoryBuffer statistics methods '
        f'{_statistics_names()}')


def _numpy_globals() -> List[Any]:
    """numpy's reconstruction helpers, array and dtype classes."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [
        type(np.dtype(t))
        for t in (np.float64, np.float32, np.float16, np.int64, np.int32,
                  np.int16, np.int8, np.uint8, np.bool_)
    ]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


def mmengine_checkpoint_globals() -> List[Any]:
    """Everything besides tensors that mmengine 0.10.7 stores in a checkpoint.

    Returns:
        list: Objects (or ``(object, pickled name)`` pairs) for
        ``torch.serialization.add_safe_globals``.
    """
    return [
        HistoryBuffer, (history_buffer_attribute, 'builtins.getattr'),
        *_numpy_globals()
    ]


def register_safe_globals() -> None:
    """Allow-list :func:`mmengine_checkpoint_globals` for ``torch.load``."""
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:  # torch < 2.4 loads everything anyway
        add_safe_globals(mmengine_checkpoint_globals())


register_safe_globals()

"""Capture and restore the global random number generators.

A resumed run continues bit-identically only if python's ``random``, numpy's
global generator and torch's (CPU and CUDA) generators are exactly where the
uninterrupted run had them. The states are stored as plain python values and
tensors so that checkpoints stay loadable under torch's ``weights_only``
default.
"""
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator

import numpy as np
import torch


def capture_rng_state() -> Dict[str, Any]:
    """Snapshot of every global generator a training step may draw from.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and (with CUDA) ``cuda``
        states; tensors and plain python values only.
    """
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=dict(
            name=str(name),
            key=key.tolist(),
            pos=int(pos),
            has_gauss=int(has_gauss),
            gauss=float(gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Put the global generators back to a :func:`capture_rng_state` snapshot.

    Args:
        state (dict): A snapshot; a ``cuda`` entry is applied only where
            CUDA is available.
    """
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    np_state = state['numpy']
    np.random.set_state(
        (np_state['name'], np.asarray(np_state['key'], dtype=np.uint32),
         np_state['pos'], np_state['has_gauss'], np_state['gauss']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


@contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run a block without changing the global generators' states.

    Used around validation during training: a resumed run does not repeat
    the validation that followed its checkpoint, so validation must not
    draw from the training streams.
    """
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)

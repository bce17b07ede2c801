"""mmengine checkpoints load under torch's weights_only default, narrowly."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

import mmgc  # noqa: F401
from mmgc.engine.checkpoint_compat import (history_buffer_attribute,
                                           register_safe_globals)


class _GetattrOf:
    """Pickles as ``getattr(owner, name)``, like a bound/unbound method."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


class _NotAllowed:
    pass


def _mmengine_like_checkpoint() -> dict:
    hub = MessageHub.get_instance('mmgc-compat-test')
    for value in (1.0, 2.5, 4.0):
        hub.update_scalar('train/loss', value)
    hub.update_info('iter', 7)
    return dict(
        meta=dict(
            iter=7,
            seed=np.int64(3),
            lr=np.float64(0.01),
            shape=np.array([1, 2, 3], dtype=np.int32)),
        state_dict={'w': torch.arange(4.0)},
        message_hub=hub.state_dict())


def test_without_the_allow_list_the_load_fails(tmp_path):
    """The trap is real on this torch: mmengine's checkpoint is refused."""
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(_mmengine_like_checkpoint(), path)
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
            torch.load(path)
    finally:
        register_safe_globals()
    assert torch.load(path)['meta']['iter'] == 7


def test_mmengine_checkpoint_round_trip(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(_mmengine_like_checkpoint(), path)
    loaded = torch.load(path)  # weights_only default on torch >= 2.6
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(2.5)
    assert buffer.min() == 1.0 and buffer.max() == 4.0
    assert loaded['meta']['seed'] == 3 and loaded['meta']['lr'] == 0.01
    np.testing.assert_array_equal(loaded['meta']['shape'], [1, 2, 3])
    assert torch.equal(loaded['state_dict']['w'], torch.arange(4.0))
    # mmengine's own loader (used by --resume and load_from)
    assert _load_checkpoint(path)['meta']['iter'] == 7


@pytest.mark.parametrize('payload', [
    _GetattrOf(HistoryBuffer, '__init__'),
    _GetattrOf(HistoryBuffer, 'update'),
    _GetattrOf(np.ndarray, 'tofile'),
    _NotAllowed(),
])
def test_everything_else_is_still_refused(tmp_path, payload):
    path = tmp_path / 'evil.pth'
    torch.save({'x': payload}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_restricted_getattr():
    assert history_buffer_attribute(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match="'system'"):
        history_buffer_attribute(HistoryBuffer, 'system')
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        history_buffer_attribute(np, 'load')

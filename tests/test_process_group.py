"""Tools destroy the default process group once their work is done, so a
gloo job does not abort in interpreter shutdown after it succeeded."""
import pytest
import torch.distributed as torch_dist

from mmgc.utils import destroy_default_group, released_process_group


@pytest.fixture
def group(tmp_path):
    """A one-rank gloo group, destroyed afterwards whatever the test did."""
    assert not torch_dist.is_initialized()
    torch_dist.init_process_group(
        'gloo',
        init_method=f'file://{tmp_path / "store"}',
        rank=0,
        world_size=1)
    yield
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def test_no_group_is_nothing_to_destroy():
    assert not torch_dist.is_initialized()
    assert destroy_default_group() is False
    with released_process_group():
        pass
    assert not torch_dist.is_initialized()


def test_the_group_is_destroyed_after_the_work(group):
    with released_process_group():
        assert torch_dist.is_initialized()
        assert torch_dist.get_world_size() == 1
    assert not torch_dist.is_initialized()


def test_sys_exit_destroys_the_group_and_keeps_its_status(group):
    with pytest.raises(SystemExit) as exc:
        with released_process_group():
            raise SystemExit(1)
    assert exc.value.code == 1
    assert not torch_dist.is_initialized()


def test_a_failure_leaves_the_group_to_the_launcher(group):
    """Another rank may be inside a collective: no teardown on errors."""
    with pytest.raises(RuntimeError, match='boom'):
        with released_process_group():
            raise RuntimeError('boom')
    assert torch_dist.is_initialized()

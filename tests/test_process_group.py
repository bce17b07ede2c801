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


_CHILD = '''
import atexit, sys
import torch.distributed as dist
from mmgc.utils import released_process_group
store, markers, mode = sys.argv[1:4]
if mode != 'no-group':
    dist.init_process_group(
        'gloo', init_method='file://' + store, rank=0, world_size=1)
atexit.register(lambda: open(markers + '.atexit', 'w').close())


class Finalized:
    """Collected only when the interpreter is torn down."""

    def __del__(self, _open=open, _path=markers + '.finalized'):
        _open(_path, 'w').close()


keep = Finalized()
print('before the work')  # buffered: a pipe is not a terminal
with released_process_group(exit_process_after=True):
    if mode == 'preempted':
        sys.exit(75)
print('after the work')
'''


@pytest.mark.parametrize('mode,status', [('done', 0), ('preempted', 75),
                                         ('no-group', 0)])
def test_tools_end_the_process_after_destroying_the_group(
        tmp_path, mode, status):
    """With a group, the tools end the process once it is destroyed: the
    status of the work (0, or its sys.exit), output flushed, atexit
    handlers run, the interpreter's teardown skipped. Without a group the
    interpreter exits as usual."""
    import subprocess
    import sys
    markers = str(tmp_path / 'marker')
    result = subprocess.run(
        [sys.executable, '-c', _CHILD,
         str(tmp_path / 'store'), markers, mode],
        capture_output=True,
        text=True,
        timeout=120)
    assert result.returncode == status, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == 'before the work'
    assert ('after the work' in lines) == (mode == 'no-group')
    assert (tmp_path / 'marker.atexit').exists()
    assert (tmp_path / 'marker.finalized').exists() == (mode == 'no-group')

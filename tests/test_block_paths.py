"""Every block's paths and devices: the fast path equals the paper's
reference path (outputs and gradients, every variant), the blocks run on
``meta`` and CUDA, compile with ``fullgraph=True``, keep softmax and
normalisation in fp32 under autocast, and stay within the launch budget."""
import copy
import itertools
from typing import Callable, Dict, List

import pytest
import torch
import torch.nn.functional as F

from mmgc.models import GCBlock, NLBlock, SASABlock, SASAConv, SEBlock
from mmgc.models.utils import IMPLS, set_impl
from mmgc.utils import randomize_
from mmgc.utils.op_count import OP_GOAL, block_op_counts, count_ops

CHANNELS = 16

# name -> builder of a block with CHANNELS input channels
VARIANTS: Dict[str, Callable[[], torch.nn.Module]] = {}
GC_POOLINGS = ('att', 'avg')
GC_FUSIONS = (('channel_add', ), ('channel_mul', ), ('channel_add',
                                                     'channel_mul'))
GC_TRANSFORMS = ('bottleneck_ln', 'bottleneck', 'conv1x1')
for _pool, _fusion, _transform in itertools.product(GC_POOLINGS, GC_FUSIONS,
                                                    GC_TRANSFORMS):
    VARIANTS[f'gc_{_pool}_{"+".join(f[8:] for f in _fusion)}_{_transform}'] = (
        lambda p=_pool, f=_fusion, t=_transform: GCBlock(
            CHANNELS, 1 / 4, pooling_type=p, fusion_types=f, transform=t))
VARIANTS['se'] = lambda: SEBlock(CHANNELS, 1 / 4)
VARIANTS['se_relu_gate'] = lambda: SEBlock(
    CHANNELS, 1 / 4, act_cfg=dict(type='ReLU'))
NL_MODES = ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation')
for _mode, _sub in itertools.product(NL_MODES, (False, True)):
    VARIANTS[f'nl_{_mode}{"_sub" if _sub else ""}'] = (
        lambda m=_mode, s=_sub: NLBlock(CHANNELS, mode=m, sub_sample=s))
VARIANTS['nl_unscaled_bn'] = lambda: NLBlock(
    CHANNELS, use_scale=False, norm_cfg=dict(type='BN'))
for _k, _stride in itertools.product((3, 5, 7), (1, 2)):
    VARIANTS[f'sasa_conv_k{_k}_s{_stride}'] = (
        lambda k=_k, s=_stride: SASAConv(
            CHANNELS, CHANNELS, k, stride=s, num_heads=2))
VARIANTS['sasa_conv_bias_block23'] = lambda: SASAConv(
    8, CHANNELS, 5, bias=True, num_heads=4, block_size=(2, 3))
VARIANTS['sasa_conv_window7x3'] = lambda: SASAConv(
    CHANNELS, 8, 3, window_size=(7, 3), num_heads=2)
VARIANTS['sasa_block'] = lambda: SASABlock(
    CHANNELS, kernel_size=5, num_heads=2)

# one of each block (the compile and CUDA tests)
MAIN = [
    'gc_att_add+mul_bottleneck_ln', 'gc_avg_mul_bottleneck', 'se',
    'nl_embedded_gaussian', 'nl_concatenation_sub', 'nl_dot_product',
    'sasa_conv_k7_s2', 'sasa_block'
]

CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='no CUDA device')


def in_channels(block: torch.nn.Module) -> int:
    return getattr(block, 'in_channels', CHANNELS)


def randomized(name: str, seed: int = 0) -> torch.nn.Module:
    """The variant with every parameter non-zero (zero-initialised output
    layers would hide every difference); BN in eval mode."""
    block = VARIANTS[name]()
    randomize_(block, seed, std=0.3)
    return block.eval()


def grads(block: torch.nn.Module, x: torch.Tensor,
          grad_out: torch.Tensor) -> List[torch.Tensor]:
    """Output, then the gradients of the input and every parameter."""
    x = x.detach().clone().requires_grad_()
    out = block(x)
    got = torch.autograd.grad(out, [x, *block.parameters()], grad_out)
    return [out.detach(), *got]


def assert_paths_equal(block, x, atol=1e-4, rtol=1e-4):
    reference, fused = copy.deepcopy(block), copy.deepcopy(block)
    set_impl(reference, 'reference')
    set_impl(fused, 'fused')
    with torch.no_grad():
        out = reference(x)
    grad_out = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(5)).to(x.device)
    names = ['output', 'input'] + [n for n, _ in block.named_parameters()]
    for name, want, got in zip(names, grads(reference, x, grad_out),
                               grads(fused, x, grad_out)):
        torch.testing.assert_close(
            got, want, atol=atol, rtol=rtol, msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize(
    'channels_last', [False, True], ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('name', list(VARIANTS))
def test_fused_path_equals_reference(name, channels_last):
    """Outputs and gradients (input and every parameter) of the fast path
    equal the paper's reference path, at an odd size that SASA's blocks
    do not tile."""
    block = randomized(name)
    x = torch.randn(
        2,
        in_channels(block),
        9,
        11,
        generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert_paths_equal(block, x)


def test_impl_is_checked_and_auto_picks_by_device():
    block = GCBlock(16, 1 / 4)
    assert block.impl == 'auto'
    with pytest.raises(ValueError, match="impl='fast'"):
        block.impl = 'fast'
    with pytest.raises(ValueError, match="impl='cuda'"):
        set_impl(block, 'cuda')
    cpu, meta = torch.empty(1, 16, 2, 2), torch.empty(
        1, 16, 2, 2, device='meta')
    assert block.use_fast_path(cpu) and not block.use_fast_path(meta)
    block.impl = 'reference'
    assert not block.use_fast_path(cpu)
    assert set_impl(
        torch.nn.Sequential(SEBlock(16, 1 / 4), SASABlock(16, num_heads=2)),
        'fused') == 2  # SEBlock and SASABlock's SASAConv
    assert IMPLS == ('auto', 'reference', 'fused')
    assert 'impl' not in dict(block.state_dict())


@pytest.mark.parametrize('impl', ['auto', 'reference', 'fused'])
@pytest.mark.parametrize('name', list(VARIANTS))
def test_meta_device_forward_backward(name, impl):
    """Shapes only: lazy initialisation and shape/FLOP tools trace blocks
    on ``meta``; forward and backward run there (no autocast is entered
    for a device type that has none)."""
    block = VARIANTS[name]().to('meta')
    set_impl(block, impl)
    x = torch.empty(
        2, in_channels(block), 9, 11, device='meta', requires_grad=True)
    out = block(x)
    stride = getattr(block, 'stride', (1, 1))
    assert out.device.type == 'meta'
    assert out.shape[2:] == (-(-9 // stride[0]), -(-11 // stride[1]))
    out.sum().backward()
    assert x.grad.shape == x.shape
    for param in block.parameters():
        assert param.grad is not None and param.grad.device.type == 'meta'


#: Relative error allowed between compiled and eager outputs/gradients
#: (inductor reorders fp32 reductions and fuses ops).
COMPILE_TOLERANCE = dict(atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('name', MAIN)
def test_compile_fullgraph_matches_eager(name):
    """``torch.compile(block, fullgraph=True)`` (inductor, CPU) gives the
    eager outputs and gradients within ``COMPILE_TOLERANCE``."""
    torch._dynamo.reset()
    block = randomized(name)
    x = torch.randn(
        2,
        in_channels(block),
        9,
        11,
        generator=torch.Generator().manual_seed(2))
    compiled = torch.compile(block, fullgraph=True)
    with torch.no_grad():
        grad_out = torch.randn_like(block(x))
    eager = grads(block, x, grad_out)
    got = grads(compiled, x, grad_out)  # parameters shared with block
    for want, have in zip(eager, got):
        torch.testing.assert_close(have, want, **COMPILE_TOLERANCE)


#: bf16 has an 8-bit mantissa (relative step 2^-8 = 0.4%), fp16 an 11-bit
#: one; after a few projections outputs and input gradients stay within 3%
#: of their largest fp32 magnitude.
AUTOCAST_TOLERANCE = 3e-2

AUTOCAST_CASES = [
    pytest.param('cpu', torch.bfloat16, id='cpu-bf16'),
    pytest.param('cuda', torch.float16, id='cuda-fp16', marks=CUDA),
    pytest.param('cuda', torch.bfloat16, id='cuda-bf16', marks=CUDA),
]


@pytest.mark.parametrize('impl', ['reference', 'fused'])
@pytest.mark.parametrize('device,dtype', AUTOCAST_CASES)
@pytest.mark.parametrize('name', MAIN)
def test_autocast_keeps_softmax_and_norms_fp32(name, device, dtype, impl,
                                               monkeypatch):
    """Under autocast every softmax, SDPA call, LayerNorm, BatchNorm and
    sigmoid gate sees fp32, and output and input gradient are within
    ``AUTOCAST_TOLERANCE`` of fp32."""
    torch.manual_seed(0)
    block = randomized(name).to(device)
    set_impl(block, impl)
    x = torch.randn(2, in_channels(block), 11, 9, device=device)
    with torch.no_grad():
        grad_out = torch.randn_like(block(x))
    want = grads(block, x, grad_out)

    seen: List[torch.dtype] = []
    softmax, sigmoid = torch.softmax, torch.sigmoid
    sdpa = F.scaled_dot_product_attention

    def recording_softmax(t, *args, **kwargs):
        seen.append(t.dtype)
        return softmax(t, *args, **kwargs)

    def recording_sigmoid(t, *args, **kwargs):
        seen.append(t.dtype)
        return sigmoid(t, *args, **kwargs)

    def recording_sdpa(q, k, v, *args, **kwargs):
        seen.extend([q.dtype, k.dtype, v.dtype])
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch, 'softmax', recording_softmax)
    monkeypatch.setattr(torch, 'sigmoid', recording_sigmoid)
    monkeypatch.setattr(F, 'scaled_dot_product_attention', recording_sdpa)
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
        for m in block.modules()
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d,
                          torch.nn.Sigmoid))
    ]
    with torch.autocast(device, dtype=dtype):
        got = grads(block, x, grad_out)
    for hook in hooks:
        hook.remove()
    if name not in ('nl_dot_product', 'nl_concatenation_sub'):  # no softmax
        assert seen, 'no softmax, SDPA, sigmoid or normalisation observed'
    assert all(d == torch.float32 for d in seen), seen
    for label, w, g in (('output', want[0], got[0]), ('input grad', want[1],
                                                      got[1])):
        err = (g.float() - w).abs().max() / w.abs().max()
        assert err < AUTOCAST_TOLERANCE, (label, err.item())


@CUDA
@pytest.mark.parametrize('name', MAIN)
def test_cuda_paths_equal_each_other_and_cpu(name):
    """On CUDA both paths run (no Python loop over images or rows) and
    agree with each other and with the CPU."""
    block = randomized(name)
    x = torch.randn(
        2,
        in_channels(block),
        9,
        11,
        generator=torch.Generator().manual_seed(1))
    assert_paths_equal(block.cuda(), x.cuda(), atol=1e-4, rtol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(
            block(x.cuda()).cpu(), block.cpu()(x), atol=1e-4, rtol=1e-3)


def test_op_counter_counts_forward_and_backward():
    """The counter sees every aten op of forward and backward: a linear
    layer is a few ops forward, more with its backward."""
    layer = torch.nn.Linear(4, 3)
    forward = count_ops(layer, (2, 4), backward=False)
    both = count_ops(layer, (2, 4))
    assert sum(forward.values()) >= 1
    assert sum(both.values()) > sum(forward.values())
    assert any('addmm' in name for name in forward)
    assert next(layer.parameters()).device.type == 'cpu'  # copy moved


def test_op_count_budget():
    """The path a GPU runs (``impl='auto'`` on ``meta``) dispatches at most
    ``OP_GOAL`` times its reference's ops, forward+backward, for every
    block at the sizes of the speed goals."""
    rows = block_op_counts()
    assert [r['name'] for r in rows] == ['GC r16', 'SE r16', 'NL', 'SASA k7']
    for row in rows:
        assert row['ops']['auto'] <= OP_GOAL * row['reference_ops'], row


def test_l2_cache_size_is_read_from_the_os(tmp_path):
    from mmgc.models.utils.halo_attention import (DEFAULT_L2_BYTES,
                                                  read_l2_cache_bytes)
    for index, (level, kind, size) in enumerate([('1', 'Data', '32K'),
                                                 ('1', 'Instruction', '32K'),
                                                 ('2', 'Unified', '1280K'),
                                                 ('3', 'Unified', '32M')]):
        entry = tmp_path / f'index{index}'
        entry.mkdir()
        (entry / 'level').write_text(level + '\n')
        (entry / 'type').write_text(kind + '\n')
        (entry / 'size').write_text(size + '\n')
    assert read_l2_cache_bytes(str(tmp_path)) == 1280 * 1024
    assert read_l2_cache_bytes(str(tmp_path / 'absent')) == DEFAULT_L2_BYTES


def test_block_choice_follows_the_cache_not_fitted_constants():
    """The chosen block fits the given L2; a smaller cache gives a block
    with a smaller working set; with none fitting, the smallest working
    set; never larger than the map."""
    from mmgc.models.utils.halo_attention import (block_working_set,
                                                  choose_block)
    window, dim = (7, 7), 32
    big = choose_block(50, 84, window, dim, cache_bytes=1 << 20)
    small = choose_block(50, 84, window, dim, cache_bytes=64 << 10)
    assert block_working_set(big, window, dim) <= 1 << 20
    assert block_working_set(small, window, dim) <= 64 << 10
    assert block_working_set(small, window,
                             dim) < block_working_set(big, window, dim)
    assert choose_block(50, 84, window, dim, cache_bytes=1) == (1, 1)
    assert choose_block(2, 3, window,
                        dim) in [(h, w) for h in (1, 2) for w in (1, 2, 3)]


@pytest.mark.parametrize('impl', ['auto', 'fused'])
@pytest.mark.parametrize('name', MAIN)
def test_no_python_loop_off_the_cpu(name, impl):
    """Off the CPU no path loops over images, rows or blocks in Python:
    the ops dispatched on ``meta`` do not depend on the batch or map size
    (a loop would add ops per image or per row block)."""
    block = VARIANTS[name]()
    set_impl(block, impl)
    channels = in_channels(block)
    small = count_ops(block, (2, channels, 8, 10))
    large = count_ops(block, (4, channels, 64, 96))
    assert small == large


@pytest.mark.parametrize('stride', [(2, 2), (2, 3), (3, 1)])
def test_stride_pool_compiled_formula_equals_ceil_mode_pooling(
        stride, monkeypatch):
    """The sums/counts form SASA's stride pooling takes under
    ``torch.compile`` equals ``avg_pool2d(ceil_mode=True)``, values and
    gradients, with partial border windows."""
    from mmgc.models.sasa import stride_pool
    x = torch.randn(2, 3, 9, 11, requires_grad=True)
    want = F.avg_pool2d(x, stride, stride, ceil_mode=True)
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    got = stride_pool(x, stride)
    grad = torch.randn_like(want)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(
        torch.autograd.grad(got, x, grad)[0],
        torch.autograd.grad(want, x, grad)[0])

"""Behaviour every mmgc block shares: argument validation, mixed precision,
robustness to sizes, batch and memory format."""
import itertools
import re
from typing import Callable, Dict, List

import pytest
import torch
import torch.nn.functional as F

from mmgc.models.catalogue import CATALOGUE, examples
from mmgc.models.gc_block import GCBlock
from mmgc.utils import randomize_

# (entry, bad constructor call) for every invalid case of the catalogue
INVALID = [(entry, case) for entry in CATALOGUE for case in entry.invalid]


def _case_id(pair) -> str:
    entry, case = pair
    return f'{entry.type}-{case.match}'


@pytest.mark.parametrize('pair', INVALID, ids=[_case_id(p) for p in INVALID])
def test_bad_argument_raises_value_error_naming_it(pair):
    entry, case = pair
    kwargs = dict(entry.valid_args, **case.args)
    with pytest.raises(ValueError, match=re.escape(case.match)):
        entry.cls(**kwargs)


# '{type}-{variant}' -> builder taking the channel count
BLOCKS: Dict[str, Callable[[int], torch.nn.Module]] = {
    name: (lambda c, e=entry, v=variant: e.build(c, v))
    for name, (entry, variant) in examples().items()
}

#: bf16 has an 8-bit mantissa (relative step 2^-8 = 0.4%); after a few
#: projections the outputs must stay within 3% of the output's scale.
AUTOCAST_TOLERANCE = 3e-2


@pytest.mark.parametrize('name', list(BLOCKS))
def test_autocast_bf16_matches_fp32(name, monkeypatch):
    """Under CPU bf16 autocast, softmax/normalisation inputs are fp32 and
    the output is within ``AUTOCAST_TOLERANCE`` (relative to the output's
    max) of the fp32 output."""
    torch.manual_seed(0)
    block = BLOCKS[name](32).eval()
    randomize_(block, std=0.2)
    x = torch.randn(2, 32, 11, 9)
    expected = block(x)

    seen: List[torch.dtype] = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, *args, **kwargs):
        seen.extend([q.dtype, k.dtype, v.dtype])
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', recording_sdpa)
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
        for m in block.modules()
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm,
                          torch.nn.Sigmoid, torch.nn.BatchNorm2d))
    ]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = block(x)
    for h in hooks:
        h.remove()
    assert out.shape == expected.shape
    assert all(dtype == torch.float32 for dtype in seen), seen
    err = (out.float() - expected).abs().max() / expected.abs().max()
    assert err < AUTOCAST_TOLERANCE, err.item()


SIZES = [(1, 1), (1, 9), (9, 1), (3, 5), (7, 7), (2, 23), (23, 3), (16, 12)]


@pytest.mark.parametrize('name', list(BLOCKS))
def test_sizes_batches_and_memory_formats(name):
    """Seeded sweep: 1x1, odd, tall, wide maps, batch 1-4, contiguous and
    channels_last inputs; shapes as expected, outputs finite and equal for
    both memory formats, gradients finite."""
    gen = torch.Generator().manual_seed(1234)
    block = BLOCKS[name](16)
    randomize_(block, std=0.2)
    for (h, w), batch in zip(SIZES, itertools.cycle([1, 2, 3, 4])):
        x = torch.randn(batch, 16, h, w, generator=gen)
        out = block(x)
        stride = getattr(block, 'stride', (1, 1))
        expected = (batch, 16, -(-h // stride[0]), -(-w // stride[1]))
        assert out.shape == expected, (h, w)
        assert torch.isfinite(out).all(), (h, w)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        x_cl.requires_grad_()
        out_cl = block(x_cl)
        torch.testing.assert_close(out_cl, out, atol=1e-5, rtol=1e-5)
        out_cl.square().sum().backward()
        assert torch.isfinite(x_cl.grad).all(), (h, w)


@pytest.mark.parametrize('fusion', [('channel_add', ), ('channel_mul', ),
                                    ('channel_add', 'channel_mul')])
@pytest.mark.parametrize('x_requires_grad', [True, False])
def test_context_fusion_row_blocks_match_autograd(fusion, x_requires_grad,
                                                  monkeypatch):
    """The hand-written backward shared by GC and SE, with row blocks forced
    small (several blocks and a ragged last one), equals autograd through
    mmcv's ContextBlock; also when only the parameters need gradients."""
    from mmcv.cnn.bricks import ContextBlock

    from mmgc.models.utils import context_fusion as fusion_module
    monkeypatch.setattr(fusion_module, '_DOT_BLOCK_BYTES', 3 * 35 * 4)
    monkeypatch.setattr(fusion_module, '_UPDATE_BLOCK_BYTES', 2 * 35 * 4)
    ref = ContextBlock(24, ratio=1 / 4, fusion_types=fusion)
    randomize_(ref, std=0.2)
    ours = GCBlock(24, ratio=1 / 4, fusion_types=fusion)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 24, 5, 7)
    x_ours = x.clone().requires_grad_(x_requires_grad)
    x_ref = x.clone().requires_grad_(x_requires_grad)
    grad = torch.randn(3, 24, 5, 7)
    inputs_ours = list(ours.parameters())
    inputs_ref = list(ref.parameters())
    if x_requires_grad:
        inputs_ours.insert(0, x_ours)
        inputs_ref.insert(0, x_ref)
    got = torch.autograd.grad(ours(x_ours), inputs_ours, grad)
    want = torch.autograd.grad(ref(x_ref), inputs_ref, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)

import torch
from torch import nn

from mmgc.utils import randomize_


def _net():
    return nn.Sequential(nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8))


def test_randomize_is_seeded_and_scaled():
    a, b, c = _net(), _net(), _net()
    randomize_(a, seed=3, std=0.02)
    randomize_(b, seed=3, std=0.02)
    randomize_(c, seed=4, std=0.02)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    weight = a[0].weight
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(weight, torch.randn(weight.shape, generator=gen) * 0.02)
    # buffers (running stats) stay as built without norm_stats
    assert torch.equal(a[1].running_var, torch.ones(8))


def test_randomize_norm_stats_keeps_1d_tensors_positive():
    net = _net()
    randomize_(net, seed=0, std=0.5, norm_stats=True)
    bn = net[1]
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        assert t.min() >= 0.1 and t.max() <= 0.6
    assert not torch.equal(bn.running_var, torch.ones(8))
    assert bn.num_batches_tracked.item() == 0  # integers untouched
    assert net[0].weight.std() > 0.3  # N(0, 0.5^2) for the conv weight

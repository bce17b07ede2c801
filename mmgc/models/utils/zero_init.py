"""Zero-initialisation that survives a parent's ``init_weights``."""
from torch import nn


def zero_init_last_layer(module: nn.Module) -> None:
    """Set the weight and bias of ``module``'s last layer to zero.

    Used for the final conv of a residual-style transform, so that a freshly
    built block leaves its input unchanged. mmengine runs a parent's
    ``init_cfg`` (e.g. Kaiming over every ``Conv2d`` of a ResNet trained from
    scratch) before each child's ``init_weights``; blocks therefore call this
    from their own ``init_weights`` as well as from ``__init__``.

    Args:
        module (nn.Module): A layer with ``weight``/``bias`` or an
            ``nn.Sequential`` whose last element has them. Wrappers such as
            mmcv's ``ConvModule`` are unwrapped through their ``conv``.
    """
    if isinstance(module, nn.Sequential):
        module = module[-1]
    if not hasattr(module, 'weight') and hasattr(module, 'conv'):
        module = module.conv
    nn.init.zeros_(module.weight)
    if getattr(module, 'bias', None) is not None:
        nn.init.zeros_(module.bias)


class OwnInitAfterParent:
    """Mixin for ``BaseModule`` blocks whose own init must win.

    ``init_weights()`` first applies ``init_cfg`` (and the children's
    inits), then the block's ``reset_parameters()``, so a zero-initialised
    output conv survives a parent's init (e.g. ResNet's Kaiming over every
    ``Conv2d``). List it before ``BaseModule``:
    ``class GCBlock(OwnInitAfterParent, BaseModule)``.
    """

    def reset_parameters(self) -> None:
        raise NotImplementedError(
            f'{type(self).__name__} must define reset_parameters()')

    def init_weights(self) -> None:
        """Apply ``init_cfg``, then the block's own ``reset_parameters``."""
        super().init_weights()
        self.reset_parameters()

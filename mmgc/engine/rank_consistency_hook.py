"""Check after training that every rank holds the same weights."""
import hashlib
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.dist import all_gather_object, broadcast, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes.

    Args:
        tensor (torch.Tensor): Any dtype, any device.

    Returns:
        str: Hex digest.
    """
    data = tensor.detach().cpu().contiguous().reshape(-1)  # [N]
    sha = hashlib.sha256(f'{data.dtype}{tuple(tensor.shape)}'.encode())
    sha.update(data.view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def state_digests(
        state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, str]':
    """Digest of every tensor of a state dict, in its order.

    Args:
        state_dict (Mapping): ``model.state_dict()`` or a checkpoint's
            ``state_dict``.

    Returns:
        OrderedDict: ``{key: hex digest}``.
    """
    return OrderedDict((key, tensor_digest(value))
                       for key, value in state_dict.items()
                       if isinstance(value, torch.Tensor))


def combined_digest(digests: Dict[str, str]) -> str:
    """One SHA-256 over all keys and their digests.

    Args:
        digests (dict): Output of :func:`state_digests`.

    Returns:
        str: Hex digest.
    """
    sha = hashlib.sha256()
    for key, digest in digests.items():
        sha.update(f'{key}:{digest};'.encode())
    return sha.hexdigest()


def first_difference(
        per_rank: List[Dict[str, str]]) -> Optional[Tuple[str, List[int]]]:
    """First state key whose digest differs from rank 0's.

    Args:
        per_rank (list[dict]): :func:`state_digests` of each rank.

    Returns:
        tuple or None: ``(key, ranks that differ)``, None if all agree.
    """
    reference = per_rank[0]
    keys = list(reference) + [
        k for d in per_rank[1:] for k in d if k not in reference
    ]
    for key in keys:
        ranks = [
            r for r, d in enumerate(per_rank[1:], 1)
            if d.get(key) != reference.get(key)
        ]
        if ranks:
            return key, ranks
    return None


@HOOKS.register_module()
class RankConsistencyHook(Hook):
    """After training, compare every parameter and buffer of each rank with
    rank 0's and log a digest of the weights.

    Every rank sends its per-tensor SHA-256 digests (not the tensors) to all
    others; on a mismatch every rank raises ``RuntimeError`` naming the first
    differing key and the ranks. Without a process group only the digest is
    logged (handy to compare runs).

    Buffers (BN running statistics) are not kept equal by DDP during
    training: it broadcasts rank 0's at the start of each forward, so after
    the last step every rank holds its own update. With ``sync_buffers``
    they are first broadcast from rank 0 (what DDP's next forward would do,
    and what the checkpoint holds); parameters are never touched.

    Args:
        sync_buffers (bool): Broadcast buffers from rank 0 before comparing.
            Defaults to True.
    """

    priority = 'LOWEST'

    def __init__(self, sync_buffers: bool = True) -> None:
        self.sync_buffers = sync_buffers

    def after_train(self, runner) -> None:
        """Compare the ranks' weights and log the digest.

        Args:
            runner (Runner): The runner.
        """
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        world_size = get_world_size()
        if world_size > 1 and self.sync_buffers:
            for buffer in model.buffers():
                broadcast(buffer, src=0)
        digests = state_digests(model.state_dict())
        per_rank = all_gather_object(digests) if world_size > 1 else [digests]
        difference = first_difference(per_rank)
        if difference is not None:
            key, ranks = difference
            raise RuntimeError(
                f'weights differ across ranks after training: {key!r} on '
                f'rank(s) {ranks} differs from rank 0 '
                f'({len(digests)} parameters and buffers compared)')
        combined = [combined_digest(d) for d in per_rank]
        runner.message_hub.update_info('weights_sha256', combined[0])
        runner.logger.info(
            f'Rank consistency: {len(digests)} parameters and buffers '
            f'identical on {world_size} rank(s); weights sha256 per rank: '
            f'{", ".join(c[:16] for c in combined)}')

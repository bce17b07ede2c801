"""Turn on mmgc's reliability features in a training config.

``tools/train.py`` calls :func:`enable_reliability` on every config. It is
driven by an optional top-level ``reliability`` dict (all keys optional)::

    reliability = dict(
        enable=True,             # False (or reliability=None): change nothing
        resume=True,             # Resumable{Iter,Epoch}BasedTrainLoop
        atomic_checkpoints=True, # AtomicCheckpointHook
        nonfinite_loss='raise',  # 'raise' | 'skip' | 'off'
        check_ranks=True,        # RankConsistencyHook
        preemption=True,         # PreemptionHook (SIGTERM, SIGUSR1)
        stall_watchdog=True)     # StallWatchdogHook (distributed runs)

e.g. ``--cfg-options reliability.nonfinite_loss=skip`` or
``reliability.enable=False``. Users of MMDetection's own ``train.py`` can
name the same types in their configs (``custom_imports=['mmgc']``).
"""
from typing import Any, Dict

from mmengine.config import Config, ConfigDict

DEFAULTS: Dict[str, Any] = dict(
    enable=True,
    resume=True,
    atomic_checkpoints=True,
    nonfinite_loss='raise',
    check_ranks=True,
    preemption=True,
    stall_watchdog=True)
NONFINITE_ACTIONS = ('raise', 'skip', 'off')
_LOOPS = {
    'IterBasedTrainLoop': 'ResumableIterBasedTrainLoop',
    'EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop'
}


def reliability_options(cfg: Config) -> Dict[str, Any]:
    """The config's ``reliability`` options merged over :data:`DEFAULTS`.

    Args:
        cfg (Config): The full config.

    Returns:
        dict: Validated options.
    """
    given = cfg.get('reliability', {})
    if given is None:
        return dict(DEFAULTS, enable=False)
    if not isinstance(given, dict):
        raise TypeError(f'reliability must be a dict or None, got {given!r}')
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise KeyError(f'unknown reliability option(s) {unknown}; allowed: '
                       f'{sorted(DEFAULTS)}')
    options = dict(DEFAULTS, **given)
    if options['nonfinite_loss'] not in NONFINITE_ACTIONS:
        raise ValueError(f'reliability.nonfinite_loss must be one of '
                         f'{NONFINITE_ACTIONS}, got '
                         f"{options['nonfinite_loss']!r}")
    return options


def _has_hook(hooks: list, hook_type: str) -> bool:
    return any(
        isinstance(h, dict) and h.get('type') in (hook_type,
                                                  f'mmgc.{hook_type}')
        for h in hooks)


def enable_reliability(cfg: Config) -> Config:
    """Switch a training config to mmgc's resumable loop, atomic checkpoint
    hook, non-finite loss guard, rank consistency check, preemption hook
    and stall watchdog.

    Only mmengine's stock types are replaced (``IterBasedTrainLoop``,
    ``EpochBasedTrainLoop``, ``CheckpointHook``, ``OptimWrapper``); custom
    ones are left alone. Results of a run that never meets a NaN are
    unchanged.

    Args:
        cfg (Config): Modified in place.

    Returns:
        Config: ``cfg``.
    """
    options = reliability_options(cfg)
    if not options['enable'] or cfg.get('train_cfg') is None:
        return cfg
    if options['resume']:
        loop = cfg.train_cfg
        if 'by_epoch' in loop and 'type' not in loop:
            loop.type = ('EpochBasedTrainLoop'
                         if loop.pop('by_epoch') else 'IterBasedTrainLoop')
        loop.type = _LOOPS.get(loop.get('type'), loop.get('type'))
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint')
    if options['atomic_checkpoints'] and checkpoint is not None and \
            checkpoint.get('type') == 'CheckpointHook':
        checkpoint.type = 'AtomicCheckpointHook'
    custom_hooks = list(cfg.get('custom_hooks', None) or [])
    action = options['nonfinite_loss']
    if action != 'off':
        wrapper = cfg.get('optim_wrapper')
        if wrapper is not None and wrapper.get(
                'type', 'OptimWrapper') == 'OptimWrapper':
            wrapper.type = 'SkipNonFiniteOptimWrapper'
        elif action == 'skip' and (wrapper is None or wrapper.get('type')
                                   != 'SkipNonFiniteOptimWrapper'):
            raise ValueError(
                "reliability.nonfinite_loss='skip' needs optim_wrapper.type "
                "'OptimWrapper' (or 'SkipNonFiniteOptimWrapper'), got "
                f"{None if wrapper is None else wrapper.get('type')!r}")
        if not _has_hook(custom_hooks, 'NonFiniteLossHook'):
            custom_hooks.append(
                ConfigDict(type='NonFiniteLossHook', action=action))
    if options['check_ranks'] and not _has_hook(custom_hooks,
                                                'RankConsistencyHook'):
        custom_hooks.append(ConfigDict(type='RankConsistencyHook'))
    if options['preemption'] and not _has_hook(custom_hooks, 'PreemptionHook'):
        custom_hooks.append(ConfigDict(type='PreemptionHook'))
    if options['stall_watchdog'] and not _has_hook(custom_hooks,
                                                   'StallWatchdogHook'):
        custom_hooks.append(ConfigDict(type='StallWatchdogHook'))
    cfg.custom_hooks = custom_hooks
    return cfg

"""Training-engine glue between mmgc and mmengine: checkpoint loading under
torch's ``weights_only`` default, and reliable training (exact resume,
atomic checkpoints, non-finite loss guard, rank consistency check,
preemption by signal, choice of the checkpoint to resume from), and
a console of progress bars (``ProgressRunner``)."""
from . import checkpoint_compat  # noqa: F401
from .atomic_checkpoint_hook import (AtomicCheckpointHook,
                                     committed_checkpoint, first_nonfinite_key)
from .atomic_io import AtomicLocalBackend, atomic_write
from .class_count_hook import (ClassCountCheckHook, add_class_count_check,
                               check_class_count, class_heads)
from .nonfinite_loss_hook import NonFiniteLossHook, nonfinite_terms
from .preemption_hook import PREEMPTED_EXIT_CODE, Preempted, PreemptionHook
from .progress_runner import ProgressBarHook, ProgressRunner
from .rank_consistency_hook import (RankConsistencyHook, combined_digest,
                                    first_difference, state_digests)
from .reliability import enable_reliability, reliability_options
from .resumable_loops import (ResumableEpochBasedTrainLoop,
                              ResumableIterBasedTrainLoop)
from .resume_checkpoint import (BadCheckpointError, check_checkpoint,
                                find_resume_checkpoint)
from .rng_state import (capture_rng_state, preserved_rng_state,
                        restore_rng_state)
from .skip_nonfinite_optim_wrapper import SkipNonFiniteOptimWrapper
from .skippable_batch_sampler import (SkippableBatchSampler,
                                      wrap_batch_sampler_cfg)
from .stall_watchdog_hook import STALLED_EXIT_CODE, StallWatchdogHook
from .train_state_hook import TRAIN_STATE_KEY, TrainStateHook

__all__ = [
    'checkpoint_compat', 'AtomicCheckpointHook', 'committed_checkpoint',
    'first_nonfinite_key', 'PREEMPTED_EXIT_CODE', 'Preempted',
    'PreemptionHook', 'STALLED_EXIT_CODE', 'StallWatchdogHook',
    'BadCheckpointError', 'check_checkpoint', 'find_resume_checkpoint',
    'AtomicLocalBackend', 'atomic_write', 'ClassCountCheckHook',
    'add_class_count_check', 'check_class_count', 'class_heads',
    'NonFiniteLossHook', 'nonfinite_terms', 'ProgressBarHook',
    'ProgressRunner', 'RankConsistencyHook', 'combined_digest',
    'first_difference', 'state_digests', 'enable_reliability',
    'reliability_options', 'ResumableEpochBasedTrainLoop',
    'ResumableIterBasedTrainLoop', 'capture_rng_state', 'preserved_rng_state',
    'restore_rng_state', 'SkipNonFiniteOptimWrapper', 'SkippableBatchSampler',
    'wrap_batch_sampler_cfg', 'TRAIN_STATE_KEY', 'TrainStateHook'
]

"""A console a person reads: progress bars on the console, the full
mmengine log in the work dir.

``tools/train.py --progress`` and ``tools/test.py --progress`` build
:class:`ProgressRunner` instead of mmengine's ``Runner``: the console shows
warnings, errors and one bar per phase (training with the loss and the ETA,
validation, testing with the main metrics), and ends with the log file's
path; every log line (environment, config, iteration logs, COCO summaries)
still goes to ``<work_dir>/<timestamp>/<timestamp>.log``.
"""
import contextlib
import logging
import os
import sys
from typing import Dict, Iterator, Optional, TextIO

from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.registry import HOOKS, RUNNERS
from mmengine.runner import Runner

from ..utils.known_warnings import KnownLogMessageFilter
from ..utils.progress import ProgressBar

LOSS_WINDOW = 10  # iterations the loss on the bar is averaged over


def console_handlers(logger: logging.Logger) -> list:
    """The handlers of ``logger`` that write to a console stream (not to a
    file)."""
    return [
        handler for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
    ]


def summary_metrics(metrics: Dict[str, float]) -> str:
    """``'bbox_mAP 0.569, segm_mAP 0.641'``: the metrics whose name ends in
    ``mAP`` (all of them when none does), without the evaluator prefix."""
    main = {k: v for k, v in metrics.items() if k.endswith('mAP')} or metrics
    return ', '.join(f'{key.split("/")[-1]} {value:.3f}' if isinstance(
        value, float) else f'{key.split("/")[-1]} {value}'
                     for key, value in main.items())


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """One progress bar per phase on rank 0: training (loss averaged over
    the last iterations, ETA), validation and testing (the main metrics
    when done); at the end, where the full log is.

    Args:
        file (TextIO, optional): Where to draw; default: ``sys.stdout`` at
            construction time (so that bars stay on the console while
            :class:`ProgressRunner` sends stray prints to the log).
    """

    priority = 'BELOW_NORMAL'  # after RuntimeInfoHook/IterTimerHook

    def __init__(self, file: Optional[TextIO] = None) -> None:
        self.file = sys.stdout if file is None else file
        self._bars: Dict[str, ProgressBar] = {}

    def _start(self,
               runner,
               phase: str,
               total: int,
               unit: str,
               start_at: int = 0) -> None:
        if runner.rank != 0:
            return
        train_bar = self._bars.get('train')
        if train_bar is not None and phase != 'train':
            # validation inside training: a line of its own
            if train_bar.completed >= train_bar.task_num:
                self._finish('train')
            else:
                train_bar.break_line()
        self._bars[phase] = ProgressBar(
            total, phase, unit, start_at, file=self.file)

    def line_break_filter(self, record: logging.LogRecord) -> bool:
        """A logging filter for the console handler that lets every record
        through, first ending the line of a bar being drawn, so that a
        warning gets a line of its own."""
        for bar in self._bars.values():
            if bar.file is self.file:
                bar.break_line()
        return True

    def _update(self, phase: str, status: Optional[str] = None) -> None:
        if phase in self._bars:
            self._bars[phase].update(1, status)

    def _finish(self, phase: str, status: Optional[str] = None) -> None:
        bar = self._bars.pop(phase, None)
        if bar is not None:
            bar.finish(status)

    def before_train(self, runner) -> None:
        self._start(runner, 'train', runner.max_iters, 'it', runner.iter)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        status = None
        if 'train/loss' in runner.message_hub.log_scalars:
            loss = runner.message_hub.get_scalar('train/loss')
            status = f'loss {loss.mean(LOSS_WINDOW):.3f}'
        self._update('train', status)

    def after_train(self, runner) -> None:
        self._finish('train')

    def before_val_epoch(self, runner) -> None:
        self._start(runner, 'val', len(runner.val_dataloader), 'batch')

    def after_val_iter(self,
                       runner,
                       batch_idx: int,
                       data_batch=None,
                       outputs=None) -> None:
        self._update('val')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._finish('val', summary_metrics(metrics or {}))
        if 'train' in self._bars:  # training goes on: a new line for it
            self._bars['train'].redraw()

    def before_test_epoch(self, runner) -> None:
        self._start(runner, 'evaluate', len(runner.test_dataloader), 'batch')

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch=None,
                        outputs=None) -> None:
        self._update('evaluate')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._finish('evaluate', summary_metrics(metrics or {}))

    def after_run(self, runner) -> None:
        for phase in list(self._bars):
            self._finish(phase)
        if runner.rank == 0:
            log_files = [
                h.baseFilename for h in runner.logger.handlers
                if isinstance(h, logging.FileHandler)
            ]
            if log_files:
                self.file.write(f'full log: {log_files[0]}\n')
                self.file.flush()


@RUNNERS.register_module()
class ProgressRunner(Runner):
    """mmengine's ``Runner`` with a quiet console.

    The logger's console handler shows warnings and errors only (its file
    handler keeps every line) except mmengine's notices about its own
    deprecated internals (``KnownLogMessageFilter``), each on a line of its
    own; a :class:`ProgressBarHook` draws the phases,
    and what third-party code prints during ``train``/``val``/``test``
    (pycocotools' evaluation summaries) goes to the log file instead of the
    console. Everything else is mmengine's ``Runner``.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.progress_hook = ProgressBarHook()
        super().__init__(*args, **kwargs)
        self.register_hook(self.progress_hook)

    def build_logger(self,
                     log_level='INFO',
                     log_file=None,
                     **kwargs) -> MMLogger:
        logger = super().build_logger(log_level, log_file, **kwargs)
        for handler in console_handlers(logger):
            handler.setLevel(max(handler.level, logging.WARNING))
            handler.addFilter(KnownLogMessageFilter())
            handler.addFilter(self.progress_hook.line_break_filter)
        return logger

    @contextlib.contextmanager
    def _prints_to_log(self) -> Iterator[None]:
        """Send ``print`` output to the log file while the block runs (on
        ranks other than 0, which keep no log file and log only errors to
        the console, nowhere)."""
        streams = [
            h.stream for h in self.logger.handlers
            if isinstance(h, logging.FileHandler)
        ]
        if streams:
            with contextlib.redirect_stdout(streams[0]):
                yield
        elif self.rank != 0:
            with open(os.devnull, 'w') as devnull, \
                    contextlib.redirect_stdout(devnull):
                yield
        else:
            yield

    # Building a loop builds its data set and evaluator (pycocotools prints
    # while it indexes a file): inside the redirection too.
    def build_train_loop(self, loop):
        with self._prints_to_log():
            return super().build_train_loop(loop)

    def build_val_loop(self, loop):
        with self._prints_to_log():
            return super().build_val_loop(loop)

    def build_test_loop(self, loop):
        with self._prints_to_log():
            return super().build_test_loop(loop)

    def train(self):
        with self._prints_to_log():
            return super().train()

    def val(self):
        with self._prints_to_log():
            return super().val()

    def test(self):
        with self._prints_to_log():
            return super().test()

"""One-line progress bars for the tools' phases (mmengine's ProgressBar
with a title and a status text, e.g. the training loss)."""
import sys
import time
from typing import Optional, TextIO

from mmengine.utils import ProgressBar as MMEngineProgressBar


class ProgressBar(MMEngineProgressBar):
    """``title [>>>>   ] 120/750, 2.1 it/s, elapsed 57s, ETA 301s, status``.

    mmengine's :class:`~mmengine.utils.ProgressBar` plus a title, a status
    text, a start count (a resumed run continues where it was; its speed
    and ETA count only this run's steps) and throttled redraws: at most
    every ``min_interval`` seconds on a terminal, at every 10% otherwise
    (a log file gets one line per bar, not one write per step).
    :meth:`finish` ends the line.

    Args:
        task_num (int): Number of steps.
        title (str): Text before the bar, e.g. ``'train'``.
        unit (str): Name of a step in the rate, e.g. ``'it'``, ``'img'``.
        start_at (int): Steps already done.
        file (TextIO, optional): Where to draw; default ``sys.stdout``.
        bar_width (int): Width of the bar in characters.
        min_interval (float): Seconds between redraws on a terminal.
    """

    def __init__(self,
                 task_num: int,
                 title: str = '',
                 unit: str = 'it',
                 start_at: int = 0,
                 file: Optional[TextIO] = None,
                 bar_width: int = 30,
                 min_interval: float = 0.2) -> None:
        self.title = title
        self.unit = unit
        self.start_at = start_at
        self.status = ''
        self.min_interval = min_interval
        self._last_draw = 0.0
        self._last_decile = -1
        self._finished = False
        self._last_len = 0
        self._last_text = ''
        self._line_open = False
        file = sys.stdout if file is None else file
        self._interactive = bool(getattr(file, 'isatty', lambda: False)())
        super().__init__(task_num, bar_width, start=False, file=file)
        self.completed = start_at
        self.start()

    def start(self) -> None:
        self._start_time = time.perf_counter()
        self._draw(force=True)

    def update(self, num_tasks: int = 1, status: Optional[str] = None) -> None:
        """Count ``num_tasks`` more steps; ``status`` replaces the text
        after the bar."""
        self.completed += num_tasks
        if status is not None:
            self.status = status
        self._draw(force=self.completed >= self.task_num)

    def finish(self, status: Optional[str] = None) -> None:
        """Draw the final state and end the line (once)."""
        if status is not None:
            self.status = status
        if not self._finished:
            self._draw(force=True)
            self._line_open = True  # the newline ends the line in any case
            self.break_line()
            self._finished = True

    def break_line(self) -> None:
        """End the current line so that other output (another bar) can
        follow; the next drawing starts a new line."""
        if not self._line_open:
            return
        self.file.write('\n')
        self.file.flush()
        self._last_len = 0
        self._last_text = ''
        self._line_open = False

    def redraw(self) -> None:
        """Draw the current state now."""
        self._draw(force=True)

    def text(self) -> str:
        """The bar as it is drawn now (without the leading ``\\r``)."""
        elapsed = time.perf_counter() - self._start_time
        done = self.completed - self.start_at
        rate = done / elapsed if elapsed > 0 else 0.0
        total = max(self.task_num, 1)
        fraction = min(1.0, self.completed / total)
        marks = int(self.bar_width * fraction)
        bar = '>' * marks + ' ' * (self.bar_width - marks)
        parts = [f'{self.completed}/{self.task_num}']
        if rate > 0:
            parts.append(f'{rate:.1f} {self.unit}/s' if rate >=
                         1 else f'{1 / rate:.1f} s/{self.unit}')
        parts.append(f'elapsed {elapsed:.0f}s')
        if 0 < done and self.completed < self.task_num:
            parts.append(f'ETA {(self.task_num - self.completed) / rate:.0f}s')
        if self.status:
            parts.append(self.status)
        title = f'{self.title:<9s} ' if self.title else ''
        return f'{title}[{bar}] ' + ', '.join(parts)

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        decile = int(10 * self.completed / max(self.task_num, 1))
        if not force:
            if self._interactive:
                if now - self._last_draw < self.min_interval:
                    return
            elif decile == self._last_decile:
                return
        text = self.text()
        if text == self._last_text:
            return
        self._last_draw, self._last_decile, self._last_text = now, decile, text
        # blank out what a longer previous drawing left on the line
        self.file.write('\r' + text.ljust(self._last_len))
        self._last_len = len(text)
        self._line_open = True
        self.file.flush()

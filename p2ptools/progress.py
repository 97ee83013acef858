"""Console output of long jobs (builders, training, translation, evaluation, downloads): progress,
and the consoles (:class:`OutputConsole`: no hard wrap off a terminal) that stdout and stderr use.

On a terminal, a rich progress bar. When stderr is not a terminal (``> log 2>&1``, CI, a pipe),
plain lines instead, so that a log is never silent: one whenever a task's status fields change
(``update(task, stats=...)``: the trainer's losses every ``log_every`` steps and its ``val_L1`` at
each epoch end), one at least every ``P2PTOOLS_PROGRESS_EVERY`` seconds (default 30) otherwise, and
one when it finishes. A new description alone prints nothing (some jobs put a per-step loss
there), and nothing is printed at the start (an input error found right away stays the only line
on stderr). Each line carries the count, the rate and an ETA::

    train pix2pix: 40/200 (20%) epoch 1/5 G_GAN 0.693 G_L1 0.31 images/s 9.8 | 2.1/s, 0:00:19 elapsed, ETA 0:01:16
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Width of a console that is not a terminal: wide enough that no table row or path is ever cut.
UNWRAPPED_WIDTH = 10_000


class OutputConsole(Console):
    """A rich console that wraps only on a terminal.

    Off a terminal (a file, a pipe, CI) text is not hard-wrapped (soft wrap) and the width is
    :data:`UNWRAPPED_WIDTH` instead of rich's 80 columns, so tables get the width their cells need
    and a markdown table or a long path stays on one line. A width given explicitly is kept.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("soft_wrap", True)
        super().__init__(**kwargs)

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(UNWRAPPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


#: Progress and status output goes to stderr so that stdout stays machine-readable.
console = OutputConsole(stderr=True)

#: Seconds between two plain progress lines of an unchanged task (non-terminal output).
EVERY_ENV = "P2PTOOLS_PROGRESS_EVERY"
DEFAULT_EVERY = 30.0


def make_progress(enabled: bool = True, *extra_columns: TextColumn) -> Progress | LineProgress:
    """A progress display with count, timing and optional extra text columns.

    A rich bar on a terminal; :class:`LineProgress` (plain lines) when stderr is not a terminal.
    Disabled displays (``enabled=False``) still count but print nothing, so library code can always
    use one. Both offer ``add_task``, ``update``, ``advance`` and the context manager.
    """
    if enabled and not console.is_terminal:
        return LineProgress(console, every=_every_from_env())
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=console,
        disable=not enabled,
        transient=False,
    )


def _every_from_env() -> float:
    raw = os.environ.get(EVERY_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_EVERY
    except ValueError:
        return DEFAULT_EVERY


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    start_completed: float
    start_time: float = field(default_factory=time.monotonic)
    last_line: float = field(default_factory=time.monotonic)
    printed_completed: float | None = None


class LineProgress:
    """Plain-text progress lines for output that is not a terminal (the rich bar's small API).

    Args:
        console: where the lines go (stderr).
        every: seconds between two lines of a task whose status did not change.
    """

    def __init__(self, console: Console, every: float = DEFAULT_EVERY) -> None:
        self.console = console
        self.every = every
        self._tasks: dict[int, _Task] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:  # the last count of every task, unless it is already the last line
            for task_id, task in self._tasks.items():
                if task.printed_completed != task.completed:
                    self._line(task_id)

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: float = 0,
                 visible: bool = True, **fields: Any) -> int:
        """Start a task; returns its id."""
        task_id = len(self._tasks)
        self._tasks[task_id] = _Task(description, total, completed, dict(fields), start_completed=completed,
                                     printed_completed=completed)
        return task_id

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields: Any) -> None:
        """Update a task; print a line when its fields change, at the end, or after ``every`` seconds."""
        task = self._tasks[task_id]
        was_done = self._done(task)
        changed = any(task.fields.get(k) != v for k, v in fields.items())
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        task.fields.update(fields)
        if changed or (self._done(task) and not was_done) or time.monotonic() - task.last_line >= self.every:
            self._line(task_id)

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Add ``advance`` to a task's count."""
        self.update(task_id, advance=advance)

    @staticmethod
    def _done(task: _Task) -> bool:
        return task.total is not None and task.completed >= task.total

    def _line(self, task_id: int) -> None:
        task = self._tasks[task_id]
        now = time.monotonic()
        task.last_line, task.printed_completed = now, task.completed
        count = _number(task.completed) + (f"/{_number(task.total)}" if task.total is not None else "")
        if task.total:
            count += f" ({100 * task.completed / task.total:.0f}%)"
        parts = [f"{task.description}: {count}"]
        status = " ".join(str(v) for v in task.fields.values() if v not in ("", None))
        if status:
            parts.append(status)
        elapsed = now - task.start_time
        rate = (task.completed - task.start_completed) / elapsed if elapsed > 0 else 0.0
        timing = f"| {rate:.0f}/s" if rate >= 100 else f"| {rate:.3g}/s"
        timing += f", {_clock(elapsed)} elapsed"
        if self._done(task):
            timing += ", done"
        elif rate > 0 and task.total is not None:
            timing += f", ETA {_clock((task.total - task.completed) / rate)}"
        parts.append(timing)
        self.console.print(" ".join(parts), markup=False, highlight=False, soft_wrap=True)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

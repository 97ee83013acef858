"""Console output of long jobs (builders, training, translation, evaluation, downloads): progress,
and the consoles (:class:`OutputConsole`: no hard wrap off a terminal) that stdout and stderr use.

On a terminal, a rich progress bar. When stderr is not a terminal (``> log 2>&1``, CI, a pipe),
plain lines instead, so that a log is never silent: one whenever a task's status fields change
(``update(task, stats=...)``: the trainer's losses every ``log_every`` steps and its ``val_L1`` at
each epoch end), one at least every ``P2PTOOLS_PROGRESS_EVERY`` seconds (default 30) otherwise, and
one when it finishes. A new description alone prints nothing (some jobs put a per-step loss
there), and nothing is printed at the start (an input error found right away stays the only line
on stderr). Each line carries the count, the rate and an ETA::

    train pix2pix: 40/200 (20%) epoch 1/5 G_GAN 0.693 G_L1_weighted 31 images/s 9.8 | 2.1/s, 0:00:19 elapsed, ETA 0:01:16
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleDimensions, ConsoleOptions
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

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


#: Columns of the rich bar itself (at most 20 wide, so that the bar, count, %, and the two times fit
#: in 80 columns beside a short description).
BAR_WIDTH = 20


def make_progress(enabled: bool = True, *extra_columns: ProgressColumn) -> Progress | LineProgress:
    """A progress display with count, timing and optional extra columns (:class:`StatsColumn`).

    A rich bar on a terminal; :class:`LineProgress` (plain lines) when stderr is not a terminal.
    Disabled displays (``enabled=False``) still count but print nothing, so library code can always
    use one. Both offer ``add_task``, ``update``, ``advance``, ``stop`` and the context manager.

    On a narrow terminal the extra columns give way first: the bar, the count, the percentage and
    the two labelled times (``0:00:19 elapsed``, ``ETA 0:01:16``) always stay.
    """
    if enabled and not console.is_terminal:
        return LineProgress(console, every=_every_from_env())
    return Progress(
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=BAR_WIDTH, table_column=Column(no_wrap=True)),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TaskProgressColumn(table_column=Column(no_wrap=True)),
        ElapsedColumn(table_column=Column(no_wrap=True)),
        RemainingColumn(table_column=Column(no_wrap=True)),
        *extra_columns,
        console=console,
        disable=not enabled,
        transient=False,
    )


class ElapsedColumn(TimeElapsedColumn):
    """The elapsed time, labelled: ``0:00:19 elapsed``."""

    def render(self, task: Task) -> Text:
        return super().render(task).append(" elapsed")


class RemainingColumn(TimeRemainingColumn):
    """The estimated time left, labelled as the plain lines do: ``ETA 0:01:16``."""

    def render(self, task: Task) -> Text:
        shown = super().render(task)
        return Text("ETA ").append(shown) if shown.plain else shown


class StatsColumn(ProgressColumn):
    """A task's status field (``"epoch 1/5 G_GAN 0.693 G_L1_weighted 31 val_L1 0.415"``) in the room left.

    The one column that shrinks when the terminal is narrow: it shows the leading ``name value``
    items that fit, whole, and drops the rest (nothing at all rather than half an item).
    """

    def __init__(self, field_name: str = "stats") -> None:
        super().__init__(table_column=Column(no_wrap=False, min_width=0))
        self.field_name = field_name

    def render(self, task: Task) -> _FittingItems:
        return _FittingItems(status_items(str(task.fields.get(self.field_name, "") or "")))


def status_items(text: str) -> list[str]:
    """``"epoch 1/5 done G_GAN 0.69 D_real 0.5"`` -> ``["epoch 1/5 done", "G_GAN 0.69", "D_real 0.5"]``.

    Items are ``name value`` pairs (``done`` stays with its epoch); text that is not made of pairs
    is split at its spaces.
    """
    items = re.findall(r"\S+ \S+(?: done)?", text)
    return items if " ".join(items) == " ".join(text.split()) else text.split()


@dataclass(frozen=True)
class _FittingItems:
    """A renderable of whole items that fit the width rich gives it (which may be 0)."""

    items: list[str]

    def _fit(self, width: int) -> str:
        shown = ""
        for item in self.items:
            candidate = f"{shown} {item}" if shown else item
            if len(candidate) > width:
                break
            shown = candidate
        return shown

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(0, len(self._fit(options.max_width)))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        yield Text(self._fit(options.max_width), no_wrap=True, overflow="crop")


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
        self._stopped = False

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop(final=exc_type is None)

    def stop(self, final: bool = False) -> None:
        """Stop printing lines (the rich bar's ``stop``); ``final``: first print each task's last count."""
        if final and not self._stopped:  # the last count of every task, unless it is already the last line
            for task_id, task in self._tasks.items():
                if task.printed_completed != task.completed:
                    self._line(task_id)
        self._stopped = True

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
        if self._stopped:
            return
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

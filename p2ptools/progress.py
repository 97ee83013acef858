"""Rich progress bars shared by long jobs (builders, training, evaluation)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Progress and status output goes to stderr so that stdout stays machine-readable.
console = Console(stderr=True)


def make_progress(enabled: bool = True, *extra_columns: TextColumn) -> Progress:
    """A progress bar with count, rate-friendly timing and optional extra text columns.

    Disabled bars (``enabled=False``, or stderr not a terminal, as in CI logs) still count but
    draw nothing, so library code can always use one.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=console,
        disable=not enabled or not console.is_terminal,
        transient=False,
    )

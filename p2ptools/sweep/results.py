"""A sweep's results: the ablation table with mean ± std over seeds, per-seed values, plots.

Files written to ``SWEEP_DIR``:

- ``cells.csv``: one line per finished cell (row, seed) with every number of its evaluation (the
  columns ``p2ptools eval`` tables have), plus the ground-truth row's cell when the spec asks for it;
- ``table.csv``: per row, the mean of each column over its seeds, ``<column> std`` (the sample
  standard deviation, n - 1 in the denominator; empty for one seed) and ``seeds`` (how many);
- ``table.md``, ``table.tex``, ``table.html``: ``mean ± std`` in every cell, as ``eval`` writes its
  tables (3 decimals, KID 4);
- ``plots/<column>.png``: each column per row, every seed a point, the mean and its ± std bar;
  shown in ``table.html``.

Bold marks a row whose lead over the runner-up exceeds the spread: for a column where larger is
better, the best mean ``m1`` (std ``s1``) is bold when ``m1 - s1 > m2 + s2``, ``m2`` and ``s2``
being the runner-up's (the second-best mean) — the two mean ± std intervals do not overlap (mirrored
where smaller is better). A row with one seed has no spread to compare, so a column where the best
or the runner-up has a single seed has no bold value; so does a column with one generated row.

KID's own ``KID std`` (the spread over random subsets within one evaluation) is left out: the
table's ± is the spread over seeds.
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from p2ptools.imageio import write_bytes_atomic, write_text_atomic
from p2ptools.sweep.spec import canonical
from p2ptools.sweep.store import cell_dir, stored_row

GROUND_TRUTH = "Ground truth"
RESULT_FILES = ("cells.csv", "table.csv", "table.md", "table.tex", "table.html")
FINGERPRINT = "results.json"
BOLD_RULE = ("Bold: a column's best mean where its lead exceeds the spread (the best mean minus its std above the runner-up's "
             "mean plus its std; mirrored where lower is better); ± is the sample std over seeds.")


def cell_values(report: dict[str, Any], label: str) -> tuple[dict[str, float], dict[str, float] | None]:
    """The table columns of one cell's ``report.json`` (as ``p2ptools eval`` tables show them) and
    the ground-truth row's, when the report has one."""
    from p2ptools.eval.evaluation import Evaluation
    from p2ptools.eval.report import KID_STD_LABEL
    from p2ptools.eval.tables import GROUND_TRUTH as EVAL_TRUTH
    from p2ptools.eval.tables import table_frame

    frame = table_frame([Evaluation(name=label, report=report)]).drop(columns=[KID_STD_LABEL], errors="ignore")
    values = {str(k): float(v) for k, v in frame.loc[label].items() if _number(v)}
    truth = ({str(k): float(v) for k, v in frame.loc[EVAL_TRUTH].items() if _number(v)} if EVAL_TRUTH in frame.index else None)
    return values, truth


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def cells_frame(sweep_dir: Path, stored: dict[str, Any], states: dict[tuple[str, int], dict[str, Any]]) -> pd.DataFrame:
    """One line per finished cell: ``row``, ``seed`` and every column of its evaluation (the
    ground-truth row's cell labelled :data:`GROUND_TRUTH`)."""
    lines = []
    for (label, seed), state in states.items():
        if state.get("status") != "done":
            continue
        folder = cell_dir(sweep_dir, stored_row(stored, label)["slug"], seed)
        report = json.loads((folder / "eval" / "report.json").read_text(encoding="utf-8"))
        values, truth = cell_values(report, label)
        lines.append({"row": label, "seed": seed, **values})
        if truth is not None:
            lines.append({"row": GROUND_TRUTH, "seed": seed, **truth})
    frame = pd.DataFrame(lines)
    if frame.empty:
        return pd.DataFrame(columns=["row", "seed"])
    return frame


def summary(cells: pd.DataFrame, order: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(means, stds, seeds) per row (rows in ``order``, ground truth last): ``std`` is the sample
    standard deviation over the row's seeds (NaN for one seed)."""
    columns = [c for c in cells.columns if c not in ("row", "seed")]
    rows = [r for r in [*order, GROUND_TRUTH] if r in set(cells["row"])]
    grouped = cells.groupby("row")[columns]
    means = grouped.mean().reindex(rows)
    stds = grouped.std(ddof=1).reindex(rows)
    counts = cells.groupby("row")["seed"].count().reindex(rows)
    return means, stds, counts


def lower_is_better(column: str) -> bool:
    """Whether a smaller value of ``column`` is better (L1, FID, KID, LPIPS)."""
    from p2ptools.eval.tables import LOWER_BETTER_COLUMNS

    return column in LOWER_BETTER_COLUMNS


def bold_rows(means: pd.DataFrame, stds: pd.DataFrame) -> dict[str, str]:
    """Column -> the row whose lead exceeds the spread (module docstring), for the columns that have one."""
    bold = {}
    generated = [r for r in means.index if r != GROUND_TRUTH]
    for column in means.columns:
        values = means.loc[generated, column].dropna()
        if len(values) < 2:
            continue
        lower = lower_is_better(str(column))
        ranked = values.sort_values(ascending=lower)
        best, second = ranked.index[0], ranked.index[1]
        s1, s2 = stds.loc[best, column], stds.loc[second, column]
        if pd.isna(s1) or pd.isna(s2):
            continue
        m1, m2 = ranked.iloc[0], ranked.iloc[1]
        clear = (m1 + s1 < m2 - s2) if lower else (m1 - s1 > m2 + s2)
        if clear:
            bold[str(column)] = str(best)
    return bold


def _decimals(column: str) -> int:
    from p2ptools.eval.tables import shown_decimals

    return shown_decimals(column)


def shown_frame(means: pd.DataFrame, stds: pd.DataFrame, bold: dict[str, str], mark) -> pd.DataFrame:
    """``mean ± std`` text cells (``mean`` alone for one seed, ``-`` where there is no value), the
    bold rows through ``mark``."""
    cells = {}
    for column in means.columns:
        d = _decimals(str(column))
        texts = []
        for row in means.index:
            m, s = means.loc[row, column], stds.loc[row, column]
            text = "-" if pd.isna(m) else f"{m:.{d}f}" if pd.isna(s) else f"{m:.{d}f} ± {s:.{d}f}"
            texts.append(mark(text) if bold.get(str(column)) == row else text)
        cells[column] = texts
    frame = pd.DataFrame(cells, index=means.index)
    frame.index.name = means.index.name
    return frame


def fingerprint(stored: dict[str, Any], states: dict[tuple[str, int], dict[str, Any]]) -> str:
    """What the results are made from: the spec and each done cell's finish time."""
    done = {f"{label}/seed{seed}": s.get("finished") for (label, seed), s in states.items() if s.get("status") == "done"}
    return canonical({"spec": stored, "done": done})


def write_results(sweep_dir: str | Path, stored: dict[str, Any], states: dict[tuple[str, int], dict[str, Any]]) -> Path:
    """Write the results files (module docstring) into ``sweep_dir``; returns ``table.html``.

    Nothing is written when the results of these very cells are there already."""
    sweep_dir = Path(sweep_dir)
    page = sweep_dir / "table.html"
    mark = fingerprint(stored, states)
    try:
        if json.loads((sweep_dir / FINGERPRINT).read_text(encoding="utf-8")).get("fingerprint") == mark and all(
                (sweep_dir / name).is_file() for name in RESULT_FILES):
            return page
    except (OSError, ValueError, AttributeError):
        pass
    order = [row["label"] for row in stored["rows"]]
    cells = cells_frame(sweep_dir, stored, states)
    means, stds, counts = summary(cells, order)
    title = "Row"
    means.index.name = stds.index.name = title
    bold = bold_rows(means, stds)
    seeds = len(stored["seeds"])
    labels = {r: (r if r == GROUND_TRUTH or counts[r] == seeds else f"{r} ({counts[r]}/{seeds} seeds)") for r in means.index}

    write_text_atomic(sweep_dir / "cells.csv", cells.to_csv(index=False, float_format="%.6f"))
    table = pd.concat([means, stds.add_suffix(" std")], axis=1)
    table = table[[c for pair in zip(means.columns, [f"{c} std" for c in means.columns], strict=True) for c in pair]]
    table["seeds"] = counts
    write_text_atomic(sweep_dir / "table.csv", table.to_csv(float_format="%.6f"))

    note = f"Mean ± std over seeds {', '.join(map(str, stored['seeds']))}. {BOLD_RULE}"
    lower = [c for c in means.columns if lower_is_better(str(c))]
    if lower:
        note += f" Lower is better for {', '.join(map(str, lower))}."
    from p2ptools.eval.report import HTML_STYLE, html_table, markdown_table
    from p2ptools.eval.tables import latex_table

    md = shown_frame(means, stds, bold, lambda t: f"**{t}**").rename(index=labels)
    write_text_atomic(sweep_dir / "table.md", f"# {stored['title']}\n\n" + markdown_table(md, title) + f"\n{note}\n")
    tex = shown_frame(means, stds, bold, lambda t: f"\\textbf{{{t}}}").rename(index=labels)
    write_text_atomic(sweep_dir / "table.tex", latex_table(tex, f"{stored['title']} (p2ptools sweep). {note}"))

    plots = write_plots(sweep_dir / "plots", cells, order)
    shown = shown_frame(means, stds, bold, lambda t: f"<b>{html.escape(t)}</b>")
    shown = shown.rename(index=labels)
    shown.index = [html.escape(str(i)) for i in shown.index]
    shown.index.name = title
    shown.columns = [html.escape(str(c)) for c in shown.columns]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(stored['title'])}</title>{HTML_STYLE}</head><body>",
             f"<h1>{html.escape(stored['title'])}</h1>", html_table(shown, escape=False), f"<p>{html.escape(note)}</p>",
             "<p>Per-seed values: <a href='cells.csv'>cells.csv</a>; means and stds: <a href='table.csv'>table.csv</a>.</p>"]
    if plots:
        parts.append("<h2>Each seed</h2><div class='plots'>")
        parts += [f"<img src='plots/{html.escape(p.name)}' alt='{html.escape(c)}'>" for c, p in plots.items()]
        parts.append("</div>")
    parts.append("<h2>Reports</h2><ul>")
    for row in stored["rows"]:
        links = []
        for seed in stored["seeds"]:
            state = states[(row["label"], seed)]
            rel = cell_dir(Path("."), row["slug"], seed) / "eval" / "report.html"
            if state.get("status") == "done":
                links.append(f"<a href='{html.escape(rel.as_posix())}'>seed {seed}</a>")
            else:
                error = f": {state.get('error')}" if state.get("error") else ""
                links.append(html.escape(f"seed {seed} {state.get('status')}{error}"))
        parts.append(f"<li>{html.escape(row['label'])}: {', '.join(links)}</li>")
    parts.append("</ul></body></html>\n")
    write_text_atomic(page, "\n".join(parts))
    write_text_atomic(sweep_dir / FINGERPRINT, json.dumps({"fingerprint": mark}) + "\n")
    return page


def write_plots(folder: Path, cells: pd.DataFrame, order: list[str]) -> dict[str, Path]:
    """One PNG per column: the rows along x, each seed a point, the mean a bar with ± std; returns
    column -> path."""
    import numpy as np
    from matplotlib.figure import Figure

    from p2ptools.eval.tables import slug

    rows = [r for r in [*order, GROUND_TRUTH] if r in set(cells["row"])]
    paths = {}
    for column in [c for c in cells.columns if c not in ("row", "seed")]:
        fig = Figure(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.2), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        for x, row in enumerate(rows):
            values = cells.loc[cells["row"] == row, column].dropna().to_numpy(dtype=float)
            if not len(values):
                continue
            offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(x + offsets, values, s=18, color="tab:blue", zorder=3, label="seed" if x == 0 else None)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar([x + 0.3], [values.mean()], yerr=[std], fmt="_", markersize=14, color="black", capsize=4,
                        label="mean ± std" if x == 0 else None)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(rows, rotation=20 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center", fontsize=8)
        ax.set_title(str(column) + (" (lower is better)" if lower_is_better(str(column)) else ""))
        ax.set_xlim(-0.6, len(rows) - 0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        path = folder / f"{slug(str(column))}.png"
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buf.getvalue())
        paths[str(column)] = path
    return paths

"""Ablation tables in the layout of the paper's Tables 1-3: one row per run, plus ground truth.

A row is labelled by what differs between the runs' configurations (``config.json`` options and
dataset): the differing option values, with friendly names for the known ones (``loss`` ->
``L1``, ``L1+cGAN``; ``netG`` -> ``U-Net``, ``encoder-decoder``; ``netD`` -> ``patch16``, ...), and
``key=value`` for the others. Runs are translated on their dataset's evaluation split first (test
when it exists, else val; ``translate_run``).

Files written to ``OUT``: ``table.md``, ``table.csv``, ``table.tex``, ``table.html`` (with the
color plots of all rows overlaid, ground truth dotted) and ``color_{L,a,b}.png``.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from p2ptools.errors import ConfigError
from p2ptools.eval.color import CHANNELS, LabBins, plot_histograms, run_colors
from p2ptools.eval.evaluate import EvalOptions, Evaluation, ScorerLike, distributed_context, evaluate_results
from p2ptools.eval.matching import find_results
from p2ptools.eval.report import (FID_LABEL, HTML_STYLE, IMAGE_KEYS, KID_LABEL, KID_STD_LABEL, LPIPS_LABEL, SCORE_KEYS,
                                  fidelity_columns, html_table, markdown_table, miou_columns, score_block, write_report)  # fmt: skip
from p2ptools.outputs import final_name
from p2ptools.imageio import write_image, write_text_atomic
from p2ptools.plugin import LoadOptions, read_run_config
from p2ptools.registry import load_run

GROUND_TRUTH = "Ground truth"
#: Columns where a smaller value is better (the others: larger is better).
LOWER_BETTER_COLUMNS = {"L1 (0-255)", FID_LABEL, KID_LABEL, KID_STD_LABEL, LPIPS_LABEL}
TITLES = {"loss": "Loss", "netG": "Generator", "netD": "Discriminator", "data": "Dataset"}
FRIENDLY = {
    "loss": {"l1": "L1", "gan": "GAN", "cgan": "cGAN", "l1+gan": "L1+GAN", "l1+cgan": "L1+cGAN"},
    "netD": {"pixel": "pixel (1x1)", "patch16": "patch16", "patch70": "patch70", "patch286": "patch286"},
}


def _friendly(key: str, value: Any) -> str:
    if key in FRIENDLY and value in FRIENDLY[key]:
        return FRIENDLY[key][value]
    if key == "netG" and isinstance(value, str):
        if value.startswith("unet_"):
            return "U-Net"
        if value.startswith("encoder_decoder_"):
            return "encoder-decoder"
        if value.startswith("resnet_"):
            return "ResNet-" + value.removeprefix("resnet_").removesuffix("blocks")
    if key in TITLES:
        return str(value)
    return f"{key}={value}"


def _flat(config: dict | None) -> dict[str, Any]:
    if not config:
        return {}
    flat = dict(config.get("options") or {})
    if config.get("data"):
        flat["data"] = Path(config["data"]).name
    return flat


def bookkeeping_options(configs: list[dict | None]) -> frozenset[str]:
    """Options of the configs' model plugins that do not change what a run learns (the fields their
    options dataclasses mark ``metadata={"bookkeeping": True}``: logging, checkpoint cadence,
    workers, device, ...). A plugin that is not installed contributes none."""
    from p2ptools import registry
    from p2ptools.errors import P2PError
    from p2ptools.options import bookkeeping_fields

    names: set[str] = set()
    for plugin in {c.get("plugin") for c in configs if c}:
        try:
            names |= bookkeeping_fields(registry.load("models", plugin).Options)
        except P2PError:
            continue
    return frozenset(names)


def run_labels(configs: list[dict | None], fallbacks: list[str]) -> tuple[str, list[str]]:
    """(column title, one label per run) from what differs between the configurations, leaving
    out bookkeeping options (:func:`bookkeeping_options`): a label names only what changes what is
    learned (objective, networks, data, schedule).

    ``fallbacks`` (e.g. run directory names) label runs without a config, runs whose configs do
    not differ, and disambiguate labels that would otherwise collide.

    Example:
        >>> run_labels([{"options": {"loss": "l1"}}, {"options": {"loss": "l1+cgan"}}], ["a", "b"])
        ('Loss', ['L1', 'L1+cGAN'])
    """
    if all(c is not None for c in configs) and len({c.get("plugin") for c in configs}) > 1:
        return _labels_across_models(configs, fallbacks)
    flats = [_flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f} - bookkeeping_options(configs))
    differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    if not differing or any(c is None for c in configs):
        return "Run", list(fallbacks)
    labels = []
    for flat in flats:
        parts = []
        for key in differing:
            friendly = {_friendly(key, f.get(key)) for f in flats}
            raw = len(friendly) < len({json.dumps(f.get(key)) for f in flats})  # names collide: show raw values
            parts.append(f"{key}={flat.get(key)}" if raw else _friendly(key, flat.get(key)))
        labels.append(", ".join(parts))
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({fb})" for label, fb in zip(labels, fallbacks, strict=True)]
    title = TITLES.get(differing[0], differing[0]) if len(differing) == 1 else "Configuration"
    return title, labels


def _labels_across_models(configs: list[dict], fallbacks: list[str]) -> tuple[str, list[str]]:
    """Rows of several model plugins: the plugin's name, then what differs among the runs of that
    plugin (options of different models are not comparable)."""
    labels = [""] * len(configs)
    for plugin in sorted({c.get("plugin") for c in configs}, key=str):
        members = [i for i, c in enumerate(configs) if c.get("plugin") == plugin]
        if len(members) == 1:
            labels[members[0]] = str(plugin)
            continue
        _, inner = run_labels([configs[i] for i in members], [fallbacks[i] for i in members])
        for i, label in zip(members, inner, strict=True):
            labels[i] = f"{plugin}: {label}"
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({fb})" for label, fb in zip(labels, fallbacks, strict=True)]
    return "Model", labels


def slug(label: str) -> str:
    """A folder name for a row label."""
    return re.sub(r"[^A-Za-z0-9.+=-]+", "_", label).strip("_") or "row"


@dataclass(frozen=True)
class Row:
    """One row of an ablation: its label and results folder (and the run behind it, if known)."""

    label: str
    results: Path
    run_dir: Path | None = None


def results_config(results: Path) -> dict | None:
    """The run configuration behind a results folder (its translate.json's ``run_dir``), if any."""
    info_path = Path(results) / "translate.json"
    try:
        run_dir = json.loads(info_path.read_text(encoding="utf-8")).get("run_dir")
        return read_run_config(run_dir) if run_dir else None
    except Exception:  # an unreadable translate.json or run config only costs the label
        return None


def translate_run(run_dir: Path, output: Path, *, split: str | None = None, device: str = "auto", batch_size: int = 1,
                  progress: bool = True, epoch: str = "latest") -> Path:
    """Translate a run's dataset split (``config.json``'s ``data``; ``split`` None = the dataset's
    evaluation split, test when it exists, else val) with the weights of ``epoch``
    (``LoadOptions.epoch``) into ``output``; reuse a finished one of the same run, split, epoch and size."""
    from p2ptools.translate import resolve_inputs, translate_files

    run_dir = Path(run_dir).resolve()  # recorded in translate.json: absolute, valid from anywhere
    config = read_run_config(run_dir)
    data = config.get("data")
    if not data:
        raise ConfigError(f"{Path(run_dir) / 'config.json'}: no dataset recorded ('data'); translate it yourself and pass --results")
    inputs = resolve_inputs(Path(data), split=split)
    done = output / "translate.json"
    if done.is_file():
        try:
            info = json.loads(done.read_text(encoding="utf-8"))
            if (info.get("run_dir") == str(run_dir) and info.get("count") == len(inputs.files)
                    and info.get("epoch_requested", "latest") == str(epoch) and info.get("split") == inputs.split):
                return output
        except ValueError:
            pass
    model = load_run(run_dir, LoadOptions(device=device, epoch=str(epoch)))
    translate_files(model, inputs, output, batch_size=batch_size, progress=progress, run_dir=run_dir, overwrite=True,  # our own row folder
                    requested_epoch=str(epoch))
    return output


def plan_rows(runs: list[Path], results: list[Path], out: Path, *, labels: dict[Path, str] | None = None,
              folder_labels: bool = False) -> tuple[str, list[Row]]:
    """Label the rows; run directories get a results folder ``out/<label>/results``.

    ``labels`` (a row's folder as given -> its label) override the derived labels, row by row;
    ``folder_labels`` labels every other row by its folder's name instead of its configuration."""
    configs = [read_run_config(r) for r in runs] + [results_config(r) for r in results]
    fallbacks = [Path(r).resolve().name for r in runs] + [Path(r).resolve().name for r in results]
    if len(set(fallbacks)) < len(fallbacks):
        fallbacks = [f"{fb}#{i + 1}" for i, fb in enumerate(fallbacks)]
    title, derived = run_labels(configs, fallbacks) if not folder_labels else ("Run", list(fallbacks))
    given = labels or {}
    paths = [Path(p) for p in [*runs, *results]]
    labels = [given.get(p, label) for p, label in zip(paths, derived, strict=True)]
    if len(set(labels)) < len(labels):
        twice = sorted({label for label in labels if labels.count(label) > 1})
        raise ConfigError(f"two rows would have one label ({', '.join(twice)}): give each its own (--runs DIR=LABEL)")
    if all(p in given for p in paths):
        title = "Run"  # the column no longer says what differs
    rows = [Row(label, out / slug(label) / "results", Path(run)) for label, run in zip(labels, runs, strict=False)]
    rows += [Row(label, Path(res)) for label, res in zip(labels[len(runs) :], results, strict=True)]
    return title, rows


def evaluate_rows(
    rows: list[Row],
    options: EvalOptions,
    scorer: ScorerLike | None,
    out: Path,
    *,
    title: str = "Run",
    device: str = "auto",
    batch_size: int = 1,
    scorer_info: dict[str, Any] | None = None,
    fidelity: Any = None,
    epoch: str = "latest",
    miou_scorer: Any = None,
) -> list[Evaluation]:
    """Translate the runs (rank 0), evaluate every row, write each row's report to
    ``out/<label>/`` and the tables to ``out``. The ground-truth row is scored with the first row;
    ``fidelity`` (:class:`p2ptools.eval.fidelity.FidelityModels`) adds FID/KID/LPIPS columns."""
    rank, world = distributed_context()
    evaluations = []
    for i, row in enumerate(rows):
        if row.run_dir is not None:
            if rank == 0:
                translate_run(row.run_dir, row.results, split=options.split, device=device, batch_size=batch_size, progress=options.progress,
                              epoch=epoch)
            _barrier(world)
        row_options = replace(options, ground_truth_row=options.ground_truth_row and i == 0)
        evaluation = evaluate_results(find_results(row.results), row_options, scorer, name=row.label, scorer_info=scorer_info, fidelity=fidelity,
                                      feature_dir=out / slug(row.label) / "features", miou_scorer=miou_scorer)
        evaluation.report["device"] = device  # the device the runs were translated and scored on
        evaluations.append(evaluation)
    if rank == 0:
        reports = {}
        colors = run_colors([ev.name for ev in evaluations])  # one color per run, in its report as in the table
        for ev in evaluations:
            write_report(ev, out / slug(ev.name), options.bins, colors=colors)
            reports[ev.name] = f"{slug(ev.name)}/report.html"
        write_tables(evaluations, out, title=title, bins=options.bins, reports=reports, colors=colors)
    return evaluations


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def table_frame(evaluations: list[Evaluation], title: str = "Run") -> pd.DataFrame:
    """Rows = runs (+ ground truth when the first evaluation has one); columns = the numbers present."""
    rows: dict[str, dict[str, Any]] = {}
    for ev in evaluations:
        row: dict[str, Any] = {}
        _, block = score_block(ev.report)
        if block:
            row.update({label: block[key] for key, label in SCORE_KEYS})
        for ch in CHANNELS:
            if "color" in ev.report:
                row[f"Color {ch}"] = ev.report["color"][ch]
        if "image" in ev.report:
            row.update({label: ev.report["image"][key] for key, label in IMAGE_KEYS})
        row.update(fidelity_columns(ev.report))
        row.update(miou_columns(ev.report))
        rows[ev.name] = row
    truth = next((ev.report["ground_truth"]["fcn"] for ev in evaluations if "ground_truth" in ev.report), None)
    if truth:
        rows[GROUND_TRUTH] = {label: truth[key] for key, label in SCORE_KEYS}
    frame = _ordered(pd.DataFrame.from_dict(rows, orient="index"))
    frame.index.name = title
    return frame


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    """LaTeX special characters escaped, in one pass (the table's labels and caption)."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _TEX[m.group(0)], text)


def shown_decimals(column: str) -> int:
    """Decimals a column is shown with in the tables (KID 4, the others 3)."""
    return 4 if column in (KID_LABEL, KID_STD_LABEL) else 3


def best_rows(frame: pd.DataFrame) -> dict[str, set[str]]:
    """For each numeric column, the generated rows (not the ground truth) holding its best value as
    shown, i.e. rounded to the table's decimals (ties all count: two cells that read the same are
    both bold or neither; a column with a single generated row has no best).
    See :data:`LOWER_BETTER_COLUMNS`."""
    generated = frame.drop(index=[GROUND_TRUTH], errors="ignore")
    best: dict[str, set[str]] = {}
    if len(generated) < 2:
        return best
    for column in generated.columns:
        values = pd.to_numeric(generated[column], errors="coerce").dropna()
        if values.empty:
            continue
        decimals = shown_decimals(str(column))
        shown = {i: float(f"{v:.{decimals}f}") for i, v in values.items()}
        target = min(shown.values()) if column in LOWER_BETTER_COLUMNS else max(shown.values())
        best[str(column)] = {str(i) for i, v in shown.items() if v == target}
    return best


def table_notes(frame: pd.DataFrame) -> str:
    """The sentences under a table: bold values, which columns are better lower (said once: the
    ``↓`` columns by their mark, the others by name), and how KID is shown."""
    lower = [str(c) for c in frame.columns if c in LOWER_BETTER_COLUMNS and c != KID_STD_LABEL]
    named = [c for c in lower if "↓" not in c] + (["the columns marked ↓"] if any("↓" in c for c in lower) else [])
    note = "Best generated value of each column in bold"
    note += f"; lower is better for {' and '.join(named)}." if named else "."
    if KID_LABEL in frame.columns:
        note += " KID as mean ± std over random subsets."
    return note


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """The ground-truth row last, after the generated rows (the paper's layout)."""
    if GROUND_TRUTH in frame.index:
        frame = frame.loc[[i for i in frame.index if i != GROUND_TRUTH] + [GROUND_TRUTH]]
    return frame


def _marked(frame: pd.DataFrame, best: dict[str, set[str]], bold, missing: str) -> pd.DataFrame:
    """The frame as shown in Markdown/HTML/LaTeX: numbers with 3 decimals, KID as "mean ± std" (4
    decimals, its std column folded in), the best generated values through ``bold``."""
    std = frame[KID_STD_LABEL] if KID_STD_LABEL in frame.columns else None
    cells = {}
    for column in frame.columns:
        if column == KID_STD_LABEL:
            continue
        texts = []
        for idx, v in frame[column].items():
            if pd.isna(v):
                texts.append(missing)
                continue
            if column == KID_LABEL:
                s = std.get(idx) if std is not None else None
                text = f"{v:.4f} ± {s:.4f}" if s is not None and not pd.isna(s) else f"{v:.4f}"
            else:
                text = f"{v:.3f}" if isinstance(v, int | float) else str(v)
            texts.append(bold(text) if str(idx) in best.get(str(column), ()) else text)
        cells[column] = texts
    marked = pd.DataFrame(cells, index=frame.index)
    marked.index.name = frame.index.name
    return marked


def write_tables(evaluations: list[Evaluation], out: str | Path, *, title: str = "Run", bins: LabBins | None = None,
                 reports: dict[str, str] | None = None, colors: dict[str, str] | None = None) -> dict[str, Path]:
    """Write ``table.{md,csv,tex,html}`` (and the overlaid color plots) into ``out``.

    ``colors``: run name -> curve color (default :func:`p2ptools.eval.color.run_colors`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = table_frame(evaluations, title)
    paths = {"csv": out / "table.csv", "md": out / "table.md", "tex": out / "table.tex", "html": out / "table.html"}
    write_text_atomic(paths["csv"], frame.to_csv(float_format="%.6f"))
    best = best_rows(frame)
    note = table_notes(frame)
    protocols = list(dict.fromkeys(ev.report["miou"]["protocol_text"] for ev in evaluations if "miou" in ev.report))
    write_text_atomic(paths["md"], markdown_table(_marked(frame, best, lambda t: f"**{t}**", "-"), title) + f"\n{note}\n"
                      + "".join(f"\n{p}.\n" for p in protocols))
    heading = f"FCN scores and color/image metrics by {title.lower()}"
    caption = f"{heading} (p2ptools eval). {note}" + "".join(f" {p}." for p in protocols)
    write_text_atomic(paths["tex"], latex_table(_marked(frame, best, lambda t: f"\\textbf{{{t}}}", "--"), caption))

    curves = {ev.name: ev.color for ev in evaluations if ev.color is not None}
    truth = next((ev.color_truth for ev in evaluations if ev.color_truth is not None), None)
    plots = plot_histograms(curves, truth, out, bins, colors=colors) if curves else {}
    paths.update({f"color_{ch}": p for ch, p in plots.items()})
    name = final_name(out)  # the table's own name, e.g. table1 (also while it is built beside it)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}: results by {html.escape(title.lower())}</title>"
             f"{HTML_STYLE}</head><body>"]
    parts.append(f"<h1>{html.escape(heading)}</h1>")
    html_frame = _marked(frame, best, lambda t: f"<b>{html.escape(t)}</b>", "-")
    html_frame.index = [html.escape(str(i)) for i in html_frame.index]
    html_frame.index.name = html.escape(str(frame.index.name)) if frame.index.name else None
    html_frame.columns = [html.escape(str(c)) for c in html_frame.columns]
    parts.append(html_table(html_frame, escape=False))
    parts.append(f"<p>{html.escape(note)}</p>")
    parts += [f"<p class='protocol'>{html.escape(p)}.</p>" for p in protocols]
    if reports:
        parts.append("<h2>Reports</h2><ul>" + "".join(f"<li><a href='{html.escape(p)}'>{html.escape(k)}</a></li>" for k, p in reports.items()) + "</ul>")
    if plots:
        parts.append("<h2>Color distributions (log probability, ground truth dotted)</h2><div class='plots'>")
        parts += [f"<img src='{p.name}' alt='{ch}'>" for ch, p in plots.items()]
        parts.append("</div>")
    comparison = comparison_html(evaluations, out)
    if comparison:
        parts.append("<h2>Samples</h2>" + comparison)
    parts.append("</body></html>\n")
    write_text_atomic(paths["html"], "\n".join(parts))
    return paths


def latex_table(marked: pd.DataFrame, caption: str) -> str:
    """``table.tex``: a booktabs table (``\\toprule``/``\\midrule``/``\\bottomrule``; the file's first
    line says so) with one header row, the index name heading the row labels' column."""
    flat = marked.rename_axis(marked.index.name or "").reset_index()
    flat.iloc[:, 0] = [_tex_escape(str(i)) for i in flat.iloc[:, 0]]
    flat.columns = [_tex_escape(str(c)) for c in flat.columns]
    tex = flat.to_latex(escape=False, index=False, caption=_tex_escape(caption), label="tab:p2ptools-eval",
                        column_format="l" + "r" * (len(flat.columns) - 1))
    tex = tex.replace("↓", "$\\downarrow$").replace("±", "$\\pm$")  # lower is better; KID mean $\pm$ std
    return "% needs \\usepackage{booktabs} (\\toprule, \\midrule, \\bottomrule)\n" + tex


def comparison_html(evaluations: list[Evaluation], out: Path) -> str:
    """Side-by-side samples: input | each row's output | ground truth, for the test images that
    every row shows (thumbnails written to ``out/samples/``). Empty when rows share no samples."""
    rows = [ev for ev in evaluations if ev.samples]
    if not rows:
        return ""
    by_row = [{s["name"]: s for s in ev.samples} for ev in rows]
    names = [n for n in by_row[0] if all(n in r for r in by_row[1:])]
    if not names:
        return ""
    head = "".join(f"<th>{html.escape(ev.name)}</th>" for ev in rows)
    lines = [f"<div class='scroll'><table class='samples'><tr><th>name</th><th>input</th>{head}<th>ground truth</th></tr>"]
    for i, name in enumerate(names):
        first = by_row[0][name]
        cells = [("input", first.get("input"))] + [(slug(ev.name), r[name].get("output")) for ev, r in zip(rows, by_row, strict=True)]
        cells.append(("truth", first.get("truth")))
        tds = []
        for role, image in cells:
            if image is None:
                tds.append("<td>-</td>")
                continue
            rel = f"samples/{i:03d}_{role}.png"
            write_image(out / rel, image)
            tds.append(f"<td><img src='{rel}' alt='{html.escape(role)}'></td>")
        lines.append(f"<tr><td>{html.escape(name)}</td>{''.join(tds)}</tr>")
    lines.append("</table></div>")  # many rows: the samples scroll sideways, not the page
    return "\n".join(lines)

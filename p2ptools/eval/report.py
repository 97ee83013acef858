"""Write an evaluation report directory.

Layout of ``REPORT_DIR``::

    report.json       the numbers (schema: {"fcn": {...}, "color": {...}, "image": {...}}; "seg" for
                      --seg, "ground_truth" for --ground-truth-row)
    report.md         the same numbers as Markdown tables
    per_class.csv     class, acc, iou (+ ground_truth_acc, ground_truth_iou)
    miou_per_class.csv  class, iou of the --miou scorer (block "miou" in report.json)
    confusion.csv     rows = ground-truth classes, columns = predicted classes + "no class"
    color_{L,a,b}.png log-probability plots, ground truth dotted
    samples/          input | output | ground truth images of the first results
    report.html       numbers, plots and the sample triplets
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from p2ptools.eval.color import CHANNELS, LabBins, plot_histograms
from p2ptools.eval.evaluate import Evaluation
from p2ptools.imageio import write_image, write_text_atomic

SCORE_KEYS = (("per_pixel_acc", "Per-pixel acc."), ("per_class_acc", "Per-class acc."), ("class_iou", "Class IOU"))
IMAGE_KEYS = (("l1", "L1 (0-255)"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM"))
#: Column labels of the distribution / perceptual metrics; the arrow marks "lower is better".
FID_LABEL, KID_LABEL, KID_STD_LABEL, LPIPS_LABEL = "FID ↓", "KID ↓", "KID std", "LPIPS ↓"
LOWER_IS_BETTER = "↓: lower is better. KID as mean ± std over random subsets."
NO_CLASS = "no class"


def json_safe(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def fmt(value: Any, digits: int = 3) -> str:
    """A number for tables: fixed digits, ``-`` for missing values."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def markdown_table(frame: pd.DataFrame, index_label: str | None = None) -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependency)."""
    cols = ([index_label or frame.index.name or ""] if index_label is not False else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    for idx, row in frame.iterrows():
        cells = ([str(idx)] if index_label is not False else []) + [fmt(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def score_block(report: dict) -> tuple[str, dict] | tuple[None, None]:
    """(key, block) of the report's class scores: "fcn" or "seg"."""
    for key in ("fcn", "seg"):
        if key in report:
            return key, report[key]
    return None, None


def per_class_frame(evaluation: Evaluation) -> pd.DataFrame | None:
    key, block = score_block(evaluation.report)
    if block is None:
        return None
    frame = pd.DataFrame.from_dict(block["per_class"], orient="index")
    frame.index.name = "class"
    truth = evaluation.report.get("ground_truth", {}).get("fcn")
    if truth:
        gt = pd.DataFrame.from_dict(truth["per_class"], orient="index").add_prefix("ground_truth_")
        frame = frame.join(gt)
    return frame


def confusion_frame(evaluation: Evaluation) -> pd.DataFrame | None:
    if evaluation.confusion is None or evaluation.classes is None:
        return None
    names = list(evaluation.classes.names)
    frame = pd.DataFrame(evaluation.confusion, index=pd.Index(names, name="ground truth \\ prediction"), columns=names + [NO_CLASS])
    return frame


def summary_frame(evaluation: Evaluation) -> pd.DataFrame:
    """One row of the headline numbers (plus the ground-truth row when present)."""
    rows = {}
    rows[evaluation.name] = _summary_row(evaluation.report)
    truth = evaluation.report.get("ground_truth")
    if truth:
        rows["ground truth"] = _summary_row(truth)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "results"
    return frame.dropna(axis=1, how="all")


def _summary_row(report: dict) -> dict[str, Any]:
    row: dict[str, Any] = {}
    _, block = score_block(report)
    for key, label in SCORE_KEYS:
        row[label] = block.get(key) if block else None
    color = report.get("color") or {}
    for ch in CHANNELS:
        row[f"Color {ch}"] = color.get(ch)
    image = report.get("image") or {}
    for key, label in IMAGE_KEYS:
        row[label] = image.get(key)
    row.update(fidelity_columns(report))
    row.update(miou_columns(report))
    return row


def miou_columns(report: dict) -> dict[str, Any]:
    """mIoU and pixel-accuracy columns of a report with a ``miou`` block, labelled by the scorer
    (``mIoU (drn-d-105)``, ``Acc. (drn-d-105)``): the protocol's column group."""
    block = report.get("miou")
    if not block:
        return {}
    name = block["protocol"]["scorer"]
    return {f"mIoU ({name})": block["miou"], f"Acc. ({name})": block["accuracy"]}


def miou_per_class_frame(report: dict) -> pd.DataFrame | None:
    """Per-class IoU of the ``miou`` block (None where a class had no pixel in ground truth or prediction)."""
    block = report.get("miou")
    if not block:
        return None
    frame = pd.DataFrame({"iou": pd.Series(block["per_class_iou"], dtype=float)})
    frame.index.name = "class"
    return frame


def fidelity_columns(report: dict) -> dict[str, Any]:
    """FID / KID (mean and std) / LPIPS columns of a report that has them."""
    row: dict[str, Any] = {}
    if "fid" in report:
        row[FID_LABEL] = report["fid"]["value"]
    if "kid" in report:
        row[KID_LABEL], row[KID_STD_LABEL] = report["kid"]["mean"], report["kid"]["std"]
    if "lpips" in report:
        row[LPIPS_LABEL] = report["lpips"]["mean"]
    return row


def has_fidelity(frame: pd.DataFrame) -> bool:
    """True when the frame has FID, KID or LPIPS columns (then the tables explain the arrows)."""
    return any(c in frame.columns for c in (FID_LABEL, KID_LABEL, LPIPS_LABEL))


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as shown in Markdown/HTML/LaTeX: KID as "mean ± std" (4 decimals), its std column folded in."""
    if KID_LABEL not in frame.columns:
        return frame
    shown = frame.copy().astype(object)
    std = frame[KID_STD_LABEL] if KID_STD_LABEL in frame.columns else None
    for idx in frame.index:
        mean = frame.at[idx, KID_LABEL]
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            shown.at[idx, KID_LABEL] = "-"
        else:
            s = std[idx] if std is not None else float("nan")
            shown.at[idx, KID_LABEL] = f"{mean:.4f} ± {s:.4f}"
    for col in frame.columns:  # the other numbers keep the tables' 3 decimals
        if col != KID_LABEL:
            shown[col] = [fmt(v) if not isinstance(v, str) else v for v in frame[col]]
    return shown.drop(columns=[KID_STD_LABEL], errors="ignore")


def summary_text(frame: pd.DataFrame) -> str:
    """The table printed on the terminal, with the cells the Markdown/HTML tables show: numbers with
    3 decimals, KID as "mean ± std", ``-`` where a row has no value (the ground truth's color and
    image columns), never ``NaN``."""
    shown = display_frame(frame).astype(object)
    for col in shown.columns:
        shown[col] = [v if isinstance(v, str) else "-" if v is None or pd.isna(v) else f"{v:.3f}" for v in shown[col]]
    return shown.to_string()


def _write_samples(evaluation: Evaluation, folder: Path) -> list[dict[str, str | None]]:
    return _write_samples_as(evaluation.samples, folder, "samples")


def _write_samples_as(entries: list[dict[str, Any]], folder: Path, sub: str) -> list[dict[str, str | None]]:
    written = []
    for i, sample in enumerate(entries):
        label = sample["name"] if "value" not in sample else f"{sample['name']} (LPIPS {sample['value']:.4f})"
        entry: dict[str, str | None] = {"name": label}
        for role in ("input", "output", "truth"):
            image = sample.get(role)
            if image is None:
                entry[role] = None
                continue
            rel = f"{sub}/{i:03d}_{role}.png"
            write_image(folder / rel, image)
            entry[role] = rel
        written.append(entry)
    return written


def html_table(frame: pd.DataFrame, *, escape: bool = True) -> str:
    """A numbers table for the report pages: one header row (the index name heads the row labels'
    column, instead of pandas' second, mostly empty header row), inside a container that scrolls
    sideways when the table is wider than the page (the 20-column confusion matrix).
    ``escape=False``: the cells, labels and names are HTML already (e.g. best values in ``<b>``)."""
    flat = frame.rename_axis(frame.index.name or "").reset_index()
    table = flat.to_html(float_format=lambda v: f"{v:.3f}", na_rep="-", border=0, classes="numbers", index=False, escape=escape)
    return f"<div class='scroll'>{table}</div>"


def _scale_color(fraction: float) -> str:
    """White (0) to dark blue (1), the confusion matrix's colour scale."""
    low, high = (255, 255, 255), (8, 48, 107)
    return "#" + "".join(f"{round(a + (b - a) * fraction):02x}" for a, b in zip(low, high, strict=True))


def confusion_html(confusion: pd.DataFrame) -> str:
    """The confusion matrix as a reader takes it in: each ground-truth row normalised to the
    percentage of its pixels per prediction, shaded on a white-to-blue scale (the legend below
    it), the pixel count on hover (and in ``confusion.csv``); vertical column names, so that 20
    columns fit a page (the table still scrolls sideways inside its container if not)."""
    counts = confusion.to_numpy(dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    head = "".join(f"<th><span>{html.escape(str(c))}</span></th>" for c in confusion.columns)
    rows = [f"<div class='scroll'><table class='numbers confusion'><thead><tr><th>{html.escape(str(confusion.index.name or ''))}</th>{head}</tr></thead><tbody>"]
    for i, name in enumerate(confusion.index):
        cells = []
        for j, column in enumerate(confusion.columns):
            f, n = float(fractions[i, j]), int(counts[i, j])
            text = f"{100 * f:.0f}" if n else ""
            ink = "#fff" if f > 0.5 else "#000"
            tip = f"{name} as {column}: {n:,} pixels ({100 * f:.1f}% of the row)"
            cells.append(f"<td style='background:{_scale_color(f)};color:{ink}' title='{html.escape(tip, quote=True)}'>{text}</td>")
        total = f" ({int(totals[i, 0]):,} px)" if totals[i, 0] else " (absent)"
        rows.append(f"<tr><td title='{html.escape(str(name) + total, quote=True)}'>{html.escape(str(name))}</td>{''.join(cells)}</tr>")
    rows.append("</tbody></table></div>")
    legend = "".join(f"<span style='background:{_scale_color(k / 10)}'></span>" for k in range(11))
    rows.append(f"<p class='scale'>% of the ground-truth class's pixels: 0 {legend} 100 (hover a cell for its pixel count)</p>")
    return "".join(rows)


HTML_STYLE = """<style>
body { font-family: sans-serif; margin: 2em; } table.numbers { border-collapse: collapse; }
table.numbers td, table.numbers th { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
table.numbers td { white-space: nowrap; }
table.numbers td:first-child, table.numbers th:first-child { text-align: left; font-weight: bold; }
.scroll { overflow-x: auto; max-width: 100%; }
.samples th, .samples td { text-align: center; vertical-align: middle; font-size: 12px; padding: 2px 4px; }
.samples img { display: block; margin: 0 auto; width: 192px; image-rendering: pixelated; }
.plots img { width: 32%; min-width: 300px; }
table.confusion td, table.confusion th { padding: 1px 3px; font-size: 11px; min-width: 2.2em; }
table.confusion thead th { vertical-align: bottom; }
table.confusion thead th span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }
p.scale span { display: inline-block; width: 14px; height: 10px; border: 1px solid #ccc; }
</style>"""


def fidelity_notes(report: dict) -> list[str]:
    """One line per FID/KID/LPIPS block: protocol, images, weights (sha256) and warnings."""
    lines = []
    for key, title in (("fid", "FID"), ("kid", "KID")):
        block = report.get(key)
        if block:
            w = block["weights"]
            extra = f"; {block['subsets']} subsets of {block['subset_size']} (seed {block['seed']})" if key == "kid" else ""
            lines.append(f"{title}: {block['n_images']} images against {block['ground_truth']}; protocol {block['protocol_text']}; Inception {w['path']} sha256 {w['sha256']}{'' if w['matches_published'] else ' (not the published file)'}{extra}.")
            if block.get("warning"):
                lines.append(f"Warning: {block['warning']}.")
    block = report.get("lpips")
    if block:
        w = block["weights"]
        lines.append(f"LPIPS ({w['net']}, v{w['version']}): {block['n_images']} pairs ({block['resized_outputs']} outputs resized to their ground truth's size); backbone {w['backbone']['path']} sha256 {w['backbone']['sha256']}; linear layers sha256 {w['linear_layers']['sha256']}.")
    return lines


def samples_html(entries: list[dict[str, str | None]]) -> str:
    """An HTML table of sample triplets: input | output | ground truth."""
    if not entries:
        return "<p>No samples.</p>"
    rows = ["<table class='samples'><tr><th>name</th><th>input</th><th>output</th><th>ground truth</th></tr>"]
    for e in entries:
        cells = [f"<td>{html.escape(str(e['name']))}</td>"]
        for role in ("input", "output", "truth"):
            cells.append(f"<td><img src='{html.escape(e[role])}' alt='{role}'></td>" if e.get(role) else "<td>-</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(rows) + "</table>"


def write_report(evaluation: Evaluation, out_dir: str | Path, bins: LabBins | None = None, *,
                 colors: dict[str, str] | None = None) -> dict[str, Path]:
    """Write every report file of one evaluation into ``out_dir``; returns name -> path.

    ``colors`` (run name -> color) draws the run's color curves as a table beside it does
    (default: the run name's own color, :func:`p2ptools.eval.color.run_colors`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    report = json_safe(evaluation.report)
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, allow_nan=False) + "\n")
    paths["json"] = out / "report.json"

    summary = summary_frame(evaluation)
    per_class = per_class_frame(evaluation)
    confusion = confusion_frame(evaluation)
    if per_class is not None:
        write_text_atomic(out / "per_class.csv", per_class.to_csv(float_format="%.6f"))
        paths["per_class"] = out / "per_class.csv"
    miou_per_class = miou_per_class_frame(report)
    if miou_per_class is not None:
        write_text_atomic(out / "miou_per_class.csv", miou_per_class.to_csv(float_format="%.6f"))
        paths["miou_per_class"] = out / "miou_per_class.csv"
    if confusion is not None:
        write_text_atomic(out / "confusion.csv", confusion.to_csv())
        paths["confusion"] = out / "confusion.csv"
    plots: dict[str, Path] = {}
    if evaluation.color is not None:
        plots = plot_histograms({evaluation.name: evaluation.color}, evaluation.color_truth, out, bins, colors=colors)
        paths.update({f"color_{ch}": p for ch, p in plots.items()})
    samples = _write_samples(evaluation, out)

    # Markdown
    shown = display_frame(summary)
    md = [f"# Evaluation: {evaluation.name}\n", f"Results: `{report.get('results')}` ({report.get('n_images')} images)\n", "## Scores\n", markdown_table(shown)]
    if has_fidelity(summary):
        md.append(f"\n{LOWER_IS_BETTER}\n")
    key, block = score_block(report)
    if block is not None:
        md.append(f"\nScores from {'the FCN-8s scorer' if key == 'fcn' else 'decoded label colors'} against {block.get('labels')}; classes: {block.get('classes')} ({block.get('num_classes')}).\n")
    if "color" in report:
        md.append(f"\nColor: {report['color']['protocol']}; ground truth: {report['color']['ground_truth']}.\n")
    if "image" in report:
        md.append(f"\nImage metrics: {report['image']['protocol']}; ground truth: {report['image']['ground_truth']}.\n")
    md += [f"\n{line}\n" for line in fidelity_notes(report)]
    if "miou" in report:
        md.append(f"\n{report['miou']['protocol_text']}.\n")
    if per_class is not None:
        md += ["\n## Per class\n", markdown_table(per_class)]
    if miou_per_class is not None:
        md += [f"\n## Per-class IoU ({report['miou']['protocol']['scorer']})\n", markdown_table(miou_per_class)]
    if plots:
        md += ["\n## Color distributions\n"] + [f"![{ch}]({p.name})\n" for ch, p in plots.items()]
    write_text_atomic(out / "report.md", "".join(md))
    paths["md"] = out / "report.md"

    # HTML
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(evaluation.name)}</title>{HTML_STYLE}</head><body>"]
    parts.append(f"<h1>Evaluation: {html.escape(evaluation.name)}</h1><p>Results: {html.escape(str(report.get('results')))} ({report.get('n_images')} images)</p>")
    parts.append("<h2>Scores</h2>" + html_table(shown))
    if has_fidelity(summary):
        parts.append(f"<p>{html.escape(LOWER_IS_BETTER)}</p>")
    for section in ("color", "image"):
        if section in report:
            parts.append(f"<p>{section}: {html.escape(report[section]['protocol'])}</p>")
    parts += [f"<p>{html.escape(line)}</p>" for line in fidelity_notes(report)]
    if "miou" in report:
        parts.append(f"<p>{html.escape(report['miou']['protocol_text'])}.</p>")
    if per_class is not None:
        parts.append("<h2>Per class</h2><p>(<a href='per_class.csv'>per_class.csv</a>)</p>" + html_table(per_class))
    if miou_per_class is not None:
        parts.append(f"<h2>Per-class IoU ({html.escape(report['miou']['protocol']['scorer'])})</h2><p>(<a href='miou_per_class.csv'>miou_per_class.csv</a>)</p>"
                     + html_table(miou_per_class))
    if confusion is not None:
        parts.append("<h2>Confusion matrix</h2><p>rows: ground truth, columns: prediction, as % of each row's pixels "
                     "(pixel counts: <a href='confusion.csv'>confusion.csv</a>)</p>" + confusion_html(confusion))
    if plots:
        parts.append("<h2>Color distributions (log probability, ground truth dotted)</h2><div class='plots'>")
        parts += [f"<img src='{p.name}' alt='{ch}'>" for ch, p in plots.items()]
        parts.append("</div>")
    parts.append("<h2 id='samples'>Samples</h2>" + samples_html(samples))
    if evaluation.per_image:
        from p2ptools.eval.fidelity import write_per_image

        write_per_image(evaluation.per_image, out / "lpips_per_image.csv")
        paths["lpips_per_image"] = out / "lpips_per_image.csv"
    if evaluation.gallery:
        gallery = _write_samples_as(evaluation.gallery, out, "worst")
        parts.append(f"<h2 id='worst'>Worst {len(gallery)} by LPIPS</h2><p>All values: <a href='lpips_per_image.csv'>lpips_per_image.csv</a></p>" + samples_html(gallery))
    parts.append("</body></html>\n")
    write_text_atomic(out / "report.html", "\n".join(parts))
    paths["html"] = out / "report.html"
    return paths

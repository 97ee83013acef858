"""The report pages as a reader sees them: one header row, their own titles, a scrolling confusion
matrix, per_class.csv linked, centred sample columns, one color per run on every page."""

from __future__ import annotations

import re

import pytest
from matplotlib.figure import Figure

from p2ptools.eval.color import RUN_PALETTE, run_colors
from p2ptools.eval.evaluate import EvalOptions
from p2ptools.eval.report import HTML_STYLE
from p2ptools.eval.tables import Row, evaluate_rows, slug

LABELS = ("L1", "L1+cGAN")  # two names whose own colors collide (both CRC-32 to the first entry)


@pytest.fixture
def pages(scene, kit, tmp_path, monkeypatch):
    """Two rows evaluated into tmp_path/table1; returns (out, {png path: {curve label: color}})."""
    import p2ptools.eval.color as color_mod

    drawn: dict[str, dict[str, str]] = {}  # PNG path -> curve label -> color
    last: dict[str, str] = {}
    real_savefig, real_write = Figure.savefig, color_mod.write_bytes_atomic

    def savefig(fig, *args, **kwargs):  # the curves of the figure being saved (into a buffer)
        last.clear()
        last.update({line.get_label(): line.get_color() for line in fig.axes[0].lines})
        return real_savefig(fig, *args, **kwargs)

    def write_bytes(path, data):  # ... and the PNG file those bytes become
        drawn[str(path)] = dict(last)
        return real_write(path, data)

    monkeypatch.setattr(Figure, "savefig", savefig)
    monkeypatch.setattr(color_mod, "write_bytes_atomic", write_bytes)
    second = tmp_path / "second"
    preds = dict(scene["preds"])
    preds[kit.frame(0)] = scene["gts"][kit.frame(0)]
    kit.make_results(second, preds)
    options = EvalOptions(fcn=True, color=True, ground_truth_row=True, cityscapes=scene["cs"], real=scene["real"], samples=2,
                          progress=False)
    out = tmp_path / "table1"
    evaluate_rows([Row(LABELS[0], scene["results"]), Row(LABELS[1], second)], options, kit.FakeScorer(), out, title="Loss")
    return out, drawn


def _header_rows(page: str) -> list[str]:
    return re.findall(r"<thead>(.*?)</thead>", page, re.S)


def test_one_color_per_run_on_every_page(pages):
    out, drawn = pages
    table = drawn[str(out / "color_L.png")]
    assert table[LABELS[0]] != table[LABELS[1]] and set(table.values()) - {"black"} <= set(RUN_PALETTE)
    for label in LABELS:
        own = drawn[str(out / slug(label) / "color_L.png")]
        assert own[label] == table[label], label


def test_run_colors_are_stable_and_distinct():
    alone = {name: run_colors([name])[name] for name in LABELS}
    assert alone[LABELS[0]] == alone[LABELS[1]]  # the collision the probing resolves
    together = run_colors(list(LABELS))
    assert together[LABELS[0]] == alone[LABELS[0]] and together[LABELS[1]] != together[LABELS[0]]
    many = run_colors([f"run {i}" for i in range(len(RUN_PALETTE))])
    assert sorted(many.values()) == sorted(RUN_PALETTE)
    assert run_colors(["run 3"]) == run_colors(["run 3"])


def test_report_page(pages):
    out, _ = pages
    page = (out / "L1" / "report.html").read_text()
    assert "<title>L1</title>" in page
    heads = _header_rows(page)
    assert len(heads) == 3  # scores, per class, confusion
    for head in heads:
        assert head.count("<tr") == 1 and "<th></th>" not in head
    assert re.findall(r"<th>([^<]*)</th>", heads[0])[0] == "results"
    assert "<a href='per_class.csv'>per_class.csv</a>" in page and (out / "L1" / "per_class.csv").is_file()
    confusion = page[page.index("<h2>Confusion matrix</h2>"):]
    assert confusion.split("</p>", 1)[1].startswith("<div class='scroll'><table")
    assert heads[2].count("<th>") == 1 + 19 + 1  # ground truth \ prediction, 19 classes, no class
    assert ".scroll { overflow-x: auto;" in page


def test_table_page(pages):
    out, _ = pages
    page = (out / "table.html").read_text()
    assert "<title>table1: results by loss</title>" in page and "p2ptools eval:" not in page
    (head,) = _header_rows(page)
    assert head.count("<tr") == 1 and re.findall(r"<th>([^<]*)</th>", head)[0] == "Loss"
    assert "<a href='L1/report.html'>L1</a>" in page


def test_sample_columns_are_centred_alike():
    assert ".samples th, .samples td { text-align: center; vertical-align: middle;" in HTML_STYLE
    img = re.search(r"\.samples img \{([^}]*)\}", HTML_STYLE).group(1)
    assert "width: 192px" in img and "margin: 0 auto" in img  # every column the same width, centred


def test_confusion_matrix_is_row_normalised_on_a_colour_scale(pages):
    """Each cell shows the % of its ground-truth row's pixels (not a raw count), shaded by it, with
    the count on hover; the counts stay in confusion.csv."""
    import html as html_mod

    import pandas as pd

    out, _ = pages
    page = (out / "L1" / "report.html").read_text()
    counts = pd.read_csv(out / "L1" / "confusion.csv", index_col=0)
    section = page[page.index("<h2>Confusion matrix</h2>"):]
    body = section[section.index("<tbody>"):section.index("</tbody>")]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    assert len(rows) == len(counts)
    checked = 0
    for (name, row), cells_html in zip(counts.iterrows(), rows, strict=True):
        cells = re.findall(r"<td style='background:(#[0-9a-f]{6});color:#[0-9a-f]{3}' title='([^']*)'>([^<]*)</td>", cells_html)
        assert len(cells) == len(counts.columns)
        total = row.sum()
        for (background, title, text), (column, n) in zip(cells, row.items(), strict=True):
            if n:
                assert text == f"{100 * n / total:.0f}" and f"{n:,} pixels" in html_mod.unescape(title), (name, column)
                checked += 1
            else:
                assert text == "" and background == "#ffffff"
    assert checked >= 2
    shades = set(re.findall(r"background:(#[0-9a-f]{6})", body))
    assert len(shades) >= 3  # a colour scale, not one colour
    assert "writing-mode: vertical-rl" in page and "% of the ground-truth class's pixels" in section


LONG = ("L1+cGAN, netD=patch286, ngf=128, lr=0.0002, load_size=572, crop_size=512",
        "L1, netD=pixel (1x1), ngf=64, lr=0.0001, load_size=286, crop_size=256, preprocess=scale_width")


def test_pages_in_a_real_browser(pages, scene, kit, tmp_path, monkeypatch):
    """A run report, the table page and an ablation with long row labels, rendered by Chromium
    1000 px wide: nothing but scroll containers wider than the window, every image loaded, a
    screenshot with content; the colour plots' legends (long labels wrapped) inside their axes."""
    from pagecheck import assert_reads_well, chromium

    chromium()
    out, _ = pages
    report = assert_reads_well(out / "L1" / "report.html", tmp_path / "report.png", min_images=4)
    assert any(i["src"].startswith("samples/") for i in report["images"])
    assert_reads_well(out / "table.html", tmp_path / "table.png", min_images=5)

    legends: list[tuple] = []
    real_savefig = Figure.savefig

    def savefig(fig, *args, **kwargs):  # where each legend sits against its axes, once drawn
        result = real_savefig(fig, *args, **kwargs)
        ax = fig.axes[0]
        legends.append((ax.get_legend().get_window_extent(), ax.get_window_extent()))
        return result

    monkeypatch.setattr(Figure, "savefig", savefig)
    second = tmp_path / "second"
    kit.make_results(second, dict(scene["preds"]))
    options = EvalOptions(fcn=True, color=True, ground_truth_row=True, cityscapes=scene["cs"], real=scene["real"], samples=2, progress=False)
    ablation = tmp_path / "ablation"
    evaluate_rows([Row(LONG[0], scene["results"]), Row(LONG[1], second)], options, kit.FakeScorer(), ablation, title="Configuration")
    assert_reads_well(ablation / "table.html", tmp_path / "ablation.png", min_images=5)
    assert legends
    for legend, axes in legends:
        assert axes.x0 <= legend.x0 and legend.x1 <= axes.x1 and axes.y0 <= legend.y0 and legend.y1 <= axes.y1, (legend, axes)

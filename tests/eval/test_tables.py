"""Ablation tables: row labels from configuration differences, the table files and their numbers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from p2ptools.errors import ConfigError

from p2ptools.eval.evaluate import EvalOptions, evaluate_results
from p2ptools.eval.matching import find_results
from p2ptools.eval.tables import GROUND_TRUTH, plan_rows, run_labels, table_frame, write_tables


def cfg(**options):
    return {"plugin": "pix2pix", "options": {"netG": "unet_256", "netD": "patch70", "loss": "l1+cgan", "workers": 4, **options}, "data": "/d/cityscapes"}


@pytest.mark.parametrize(
    ("configs", "title", "labels"),
    [
        ([cfg(loss="l1"), cfg(loss="l1+cgan"), cfg(loss="cgan")], "Loss", ["L1", "L1+cGAN", "cGAN"]),
        ([cfg(netD="patch16"), cfg(netD="patch286"), cfg(netD="pixel")], "Discriminator", ["patch16", "patch286", "pixel (1x1)"]),
        ([cfg(netG="encoder_decoder_256"), cfg(netG="unet_256")], "Generator", ["encoder-decoder", "U-Net"]),
        ([cfg(netG="unet_128"), cfg(netG="unet_256")], "Generator", ["netG=unet_128", "netG=unet_256"]),  # friendly names collide
        ([cfg(netG="unet_256", loss="l1"), cfg(netG="encoder_decoder_256", loss="l1+cgan")], "Configuration", ["L1, U-Net", "L1+cGAN, encoder-decoder"]),
        ([cfg(lr=1e-4), cfg(lr=2e-4)], "lr", ["lr=0.0001", "lr=0.0002"]),
        ([cfg(workers=1), cfg(workers=8)], "Run", ["a", "b"]),  # only bookkeeping options differ: fallbacks
        ([cfg(), None], "Run", ["a", "b"]),  # a row without a config
    ],
)
def test_run_labels(configs, title, labels):
    fallbacks = ["a", "b", "c"][: len(configs)]
    assert run_labels(configs, fallbacks) == (title, labels)


def test_bookkeeping_options_never_label_a_row():
    # the ablation: loss differs, and so does every kind of bookkeeping
    configs = [cfg(loss="l1", log="jsonl", log_every=20, save_epoch_freq=0, checkpoint_minutes=10.0, sample_images=4, device="cpu"),
               cfg(loss="l1+cgan", log="jsonl,tensorboard", log_every=2, save_epoch_freq=1, checkpoint_every=5, workers=0,
                   device="cuda", compile=True, channels_last=False)]
    assert run_labels(configs, ["a", "b"]) == ("Loss", ["L1", "L1+cGAN"])
    hd = {"plugin": "pix2pixhd", "options": {"ngf": 64, "log_every": 20, "workers": 2}, "data": "/d/x"}
    assert run_labels([hd, {**hd, "options": {"ngf": 64, "log_every": 5, "workers": 4}}], ["a", "b"]) == ("Run", ["a", "b"])


def test_bookkeeping_comes_from_the_options_metadata():
    """Every option of the built-in plugins is either bookkeeping (marked in its dataclass field) or
    changes what is learned; the marked ones are exactly these (a new field must choose)."""
    from p2ptools_pix2pix.options import Pix2PixOptions
    from p2ptools_pix2pixhd.options import Pix2PixHDOptions

    from p2ptools.options import bookkeeping_fields

    assert bookkeeping_fields(Pix2PixOptions) == {"workers", "device", "channels_last", "compile", "checkpoint_every", "checkpoint_minutes",
                                                  "save_epoch_freq", "log", "log_every", "sample_images"}
    assert bookkeeping_fields(Pix2PixHDOptions) == bookkeeping_fields(Pix2PixOptions)  # the shared TrainOptions' fields


def test_row_labels_given_per_row_or_from_folders(tmp_path):
    runs = []
    for name, loss in (("base", "l1"), ("ours", "l1+cgan")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(cfg(loss=loss, log_every=5 if name == "ours" else 20)))
        runs.append(tmp_path / name)
    title, rows = plan_rows(runs, [], tmp_path / "out", labels={runs[1]: "Ours (λ=10)"})
    assert title == "Loss" and [r.label for r in rows] == ["L1", "Ours (λ=10)"]
    assert rows[1].results == tmp_path / "out" / "Ours_=10" / "results"
    title, rows = plan_rows(runs, [], tmp_path / "out", folder_labels=True)
    assert title == "Run" and [r.label for r in rows] == ["base", "ours"]
    with pytest.raises(ConfigError, match=r"two rows would have one label \(L1\)"):
        plan_rows(runs, [], tmp_path / "out", labels={runs[1]: "L1"})


def test_eval_cli_splits_dir_equals_label(tmp_path):
    from p2ptools.cli.eval import _labelled

    (tmp_path / "run").mkdir()
    labels: dict = {}
    assert _labelled(tmp_path / "run=lambda=10", labels) == tmp_path / "run" and labels == {tmp_path / "run": "lambda=10"}
    assert _labelled(tmp_path / "run", labels) == tmp_path / "run"
    (tmp_path / "a=b").mkdir()  # a folder whose name holds "=" is a folder
    assert _labelled(tmp_path / "a=b", labels) == tmp_path / "a=b"
    with pytest.raises(ConfigError, match="empty row label"):
        _labelled(tmp_path / "run=", {})


def test_plan_rows_reads_configs_of_runs_and_translated_results(tmp_path, kit):
    runs = []
    for loss in ("l1", "l1+cgan"):
        run = tmp_path / f"run_{loss}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps(cfg(loss=loss)))
        runs.append(run)
    res = tmp_path / "translated"
    kit.write_translate_json(res, run_dir=str(tmp_path / "run_gan"))
    (tmp_path / "run_gan").mkdir()
    (tmp_path / "run_gan" / "config.json").write_text(json.dumps(cfg(loss="gan")))
    title, rows = plan_rows(runs, [res], tmp_path / "out")
    assert title == "Loss" and [r.label for r in rows] == ["L1", "L1+cGAN", "GAN"]
    assert rows[0].results == tmp_path / "out" / "L1" / "results" and rows[0].run_dir == runs[0]
    assert rows[2].results == res and rows[2].run_dir is None


def test_tables_hold_every_row_and_the_ground_truth(scene, kit, tmp_path):
    base = EvalOptions(fcn=True, color=True, cityscapes=scene["cs"], real=scene["real"], samples=0, progress=False)
    first = evaluate_results(find_results(scene["results"]), EvalOptions(**{**base.__dict__, "ground_truth_row": True}), kit.FakeScorer(), name="L1")
    # a second "run": the same results with one frame's predictions made perfect
    second_dir = tmp_path / "second"
    preds = dict(scene["preds"])
    preds["frankfurt_000000_000000"] = scene["gts"]["frankfurt_000000_000000"]
    kit.make_results(second_dir, preds)
    second = evaluate_results(find_results(second_dir), base, kit.FakeScorer(), name="L1+cGAN")
    paths = write_tables([first, second], tmp_path / "table", title="Loss")

    frame = pd.read_csv(paths["csv"], index_col=0)
    assert list(frame.index) == ["L1", "L1+cGAN", GROUND_TRUTH] and frame.index.name == "Loss"
    assert frame.loc["L1", "Per-pixel acc."] == pytest.approx(first.report["fcn"]["per_pixel_acc"], abs=1e-6)
    assert frame.loc["L1+cGAN", "Class IOU"] == pytest.approx(second.report["fcn"]["class_iou"], abs=1e-6)
    assert frame.loc[GROUND_TRUTH, "Per-class acc."] == pytest.approx(first.report["ground_truth"]["fcn"]["per_class_acc"], abs=1e-6)
    assert pd.isna(frame.loc[GROUND_TRUTH, "Color L"])
    assert frame.loc["L1+cGAN", "Per-pixel acc."] > frame.loc["L1", "Per-pixel acc."]

    md = paths["md"].read_text()
    assert md.startswith("| Loss | Per-pixel acc. | Per-class acc. | Class IOU |")
    # the better generated row's value in bold; the ground truth, last, never is
    assert f"| L1+cGAN | **{second.report['fcn']['per_pixel_acc']:.3f}** |" in md
    assert f"| L1 | {first.report['fcn']['per_pixel_acc']:.3f} |" in md
    truth_line = next(line for line in md.splitlines() if line.startswith(f"| {GROUND_TRUTH} |"))
    assert "**" not in truth_line and md.splitlines().index(truth_line) == 4
    assert "Best generated value of each column in bold; lower is better for L1 (0-255)." in md
    tex = paths["tex"].read_text()
    assert "\\begin{tabular}" in tex and f"{first.report['fcn']['class_iou']:.3f}" in tex and "L1+cGAN" in tex
    assert f"\\textbf{{{second.report['fcn']['per_pixel_acc']:.3f}}}" in tex
    html = paths["html"].read_text()
    assert f"{second.report['color']['a']:.3f}" in html and "color_L.png" in html
    assert f"<b>{second.report['fcn']['per_pixel_acc']:.3f}</b>" in html
    assert (tmp_path / "table" / "color_b.png").read_bytes()[:4] == b"\x89PNG"
    assert table_frame([first, second]).shape[0] == 3


def test_best_rows_direction_ties_and_ground_truth():
    from p2ptools.eval.tables import best_rows

    frame = pd.DataFrame({"Per-pixel acc.": [0.5, 0.7, 0.9], "L1 (0-255)": [10.0, 12.0, None], "SSIM": [0.4, 0.4, None]},
                         index=["L1", "L1+cGAN", GROUND_TRUTH])  # fmt: skip
    best = best_rows(frame)
    assert best == {"Per-pixel acc.": {"L1+cGAN"}, "L1 (0-255)": {"L1"}, "SSIM": {"L1", "L1+cGAN"}}  # ground truth excluded
    assert best_rows(frame.loc[["L1", GROUND_TRUTH]]) == {}  # one generated row: nothing to compare


def _fake_evaluations() -> list:
    """Two rows whose SSIM differ below the shown 3 decimals (0.7504 and 0.7496 both read 0.750),
    with KID, and a ground-truth row that has only the FCN scores."""
    from p2ptools.eval.evaluation import Evaluation

    def report(acc, l1, ssim, kid):
        return {"fcn": {"per_pixel_acc": acc, "per_class_acc": 0.3, "class_iou": 0.2},
                "image": {"l1": l1, "psnr": 20.0, "ssim": ssim}, "kid": {"mean": kid, "std": 0.00002}}

    first = Evaluation("L1", {**report(0.61, 30.0, 0.7504, 0.0123), "ground_truth": {"fcn": {"per_pixel_acc": 0.8, "per_class_acc": 0.4, "class_iou": 0.3}}})
    return [first, Evaluation("L1+cGAN", report(0.65, 31.0, 0.7496, 0.0101))]


def test_table_files_read_as_a_person_reads_them(tmp_path):
    from p2ptools.eval.report import summary_text

    paths = write_tables(_fake_evaluations(), tmp_path / "table1", title="Loss")
    md = paths["md"].read_text()
    # bold is chosen on the shown values: 0.750 and 0.750 are a tie, both bold
    ssim_cells = [line.split(" | ")[6] for line in md.splitlines() if line.startswith(("| L1 |", "| L1+cGAN |"))]
    assert ssim_cells == ["**0.750**", "**0.750**"]
    assert md.count("lower is better") == 1 and "lower is better for L1 (0-255) and the columns marked ↓." in md
    # the terminal table shows "-" where md and html do, never NaN
    terminal = summary_text(table_frame(_fake_evaluations(), "Loss"))
    truth_line = next(line for line in terminal.splitlines() if line.startswith(GROUND_TRUTH))
    assert "NaN" not in terminal and truth_line.split()[-1] == "-" and "0.0101 ± 0.0000" in terminal

    tex = paths["tex"].read_text()
    assert tex.splitlines()[0] == "% needs \\usepackage{booktabs} (\\toprule, \\midrule, \\bottomrule)"
    header = tex.split("\\toprule\n")[1].split("\\midrule")[0].strip().splitlines()
    assert len(header) == 1 and header[0].startswith("Loss & Per-pixel acc.")  # one header row, the index name in it
    assert tex.count("lower is better") == 1

    html = paths["html"].read_text()
    h1 = html.split("<h1>")[1].split("</h1>")[0]
    assert h1 == "FCN scores and color/image metrics by loss" and "bold" not in h1  # the notes are said once, below
    assert html.count("lower is better") == 1
    assert "table.numbers td { white-space: nowrap; }" in html  # "0.0101 ± 0.0000" stays on one line

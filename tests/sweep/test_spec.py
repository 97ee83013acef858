"""Sweep specs: one-line errors naming the file and the key, before anything runs; the shipped specs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_specs import EVAL, ROWS, TRAIN, spec_text, write_spec

from p2ptools.errors import ConfigError
from p2ptools.sweep.spec import find_spec, load_spec, shipped_specs


def _error(tmp_path: Path, sweep_data: Path, text: str) -> str:
    path = write_spec(tmp_path, sweep_data, text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize(("text", "expected"), [
    (spec_text(extra="colour = 1"), "colour: unknown key"),
    (spec_text(train=TRAIN + 'netg = "unet_32"\n'), "train.netg: unknown train option of this model (did you mean netG?)"),
    (spec_text(rows=ROWS + '[[rows]]\nlabel = "bad"\nnetD = "patch7"\n'), "rows[2] (bad): --netD: invalid value 'patch7'"),
    (spec_text(rows=ROWS + '[[rows]]\nlabel = "lr"\nlr = -1.0\n'), "rows[2] (lr): --lr: invalid value -1.0; accepted range [0, 1]"),
    (spec_text(rows=ROWS + '[[rows]]\nlabel = "e"\nepochs = "ten"\n'), "rows[2] (e): option 'epochs' must be a whole number, got 'ten'"),
    (spec_text(rows=ROWS + '[[rows]]\nlabel = "big"\ncrop-size = 64\n'), "rows[2] (big): --crop-size 64 is larger than --load-size 32"),
    (spec_text(rows=ROWS + '[[rows]]\nlabel = "s"\nseed = 3\n'), "rows[2] (s).seed: the seed is not a row option"),
    (spec_text(rows=ROWS + '[[rows]]\nnetD = "pixel"\n'), "rows[2].label: each row needs a label"),
    (spec_text(rows=ROWS + '[[rows]]\nlabel = "L1"\n'), "rows[2] (L1).label: two rows would share the folder 'L1'"),
    (spec_text(train=TRAIN + "load_size = 36\n"), "train.load_size: option load_size is given twice"),
    (spec_text(rows=ROWS + '[[rows]]\nlabel = "Ground truth"\n'), "rows[2] (Ground truth).label: 'Ground truth' is the table's row"),
    (spec_text(seeds="[0, 0]"), "seeds: a seed is listed twice"),
    (spec_text(seeds="[-1]"), "seeds: invalid seed -1"),
    (spec_text(seeds="3"), "seeds: must be an array, got 3"),
    (spec_text(data="missing"), "data: "),
    (spec_text(eval_=EVAL + "fidd = true\n"), "eval.fidd: unknown key (did you mean fid?)"),
    (spec_text(eval_='[eval]\nfcn = true\n'), "eval: --fcn and --ground-truth-row need --fcn-weights"),
    (spec_text(eval_='[eval]\nsamples = 2\n'), "eval: choose what to measure"),
    (spec_text(eval_=EVAL + 'fcn-weights = "nowhere.caffemodel"\n'), "eval.fcn-weights: "),
    (spec_text(eval_=EVAL + "lpips-net = 'alex'\n"), "eval.lpips-net: is the backbone of lpips"),
    (spec_text(extra='model = "nosuchmodel"'), "model: "),
    ("seeds = [0\n", "not valid TOML"),
    (spec_text(extra='[slurm]\npartiton = "gpu"\n'), "slurm.partiton: unknown key (did you mean partition?)"),
    (spec_text(extra="[slurm]\ntime = 0\n"), "slurm.time: must be a whole number >= 1, got 0"),
    (spec_text(extra='[slurm]\ngpus-per-job = "one"\n'), "slurm.gpus-per-job: must be a whole number, got 'one'"),
    (spec_text(extra='[slurm]\naccount = " "\n'), "slurm.account: must not be empty"),
    (spec_text(extra='slurm = "gpu"'), "slurm: must be a table, got 'gpu'"),
])  # fmt: skip
def test_bad_specs_are_one_line_naming_the_key(tmp_path, sweep_data, text, expected):
    assert _error(tmp_path, sweep_data, text).startswith(expected)


def test_missing_data_names_the_folder(tmp_path, sweep_data):
    message = _error(tmp_path, sweep_data, spec_text(data="missing"))
    assert message == f"data: {(tmp_path / 'missing').resolve()}: no such dataset folder"


def test_a_row_is_what_train_would_run(tmp_path, sweep_data):
    spec = load_spec(write_spec(tmp_path, sweep_data, spec_text(train=TRAIN + "lambda-l1 = 10.0\n")))
    assert [r.label for r in spec.rows] == ["L1", "L1+cGAN"]
    assert spec.seeds == (0, 1) and spec.threads == 1
    l1 = spec.row("L1")
    assert l1.options["loss"] == "l1" and l1.options["lambda_l1"] == 10.0 and l1.options["load_size"] == 32
    assert l1.data == (tmp_path / "data").resolve()
    assert spec.cells() == [("L1", 0), ("L1", 1), ("L1+cGAN", 0), ("L1+cGAN", 1)]


def test_data_from_the_command_line_replaces_the_specs(tmp_path, sweep_data):
    path = write_spec(tmp_path, sweep_data, spec_text(data="missing"))
    spec = load_spec(path, data=sweep_data)
    assert {r.data for r in spec.rows} == {sweep_data.resolve()}


@pytest.mark.parametrize("name", ["paper-table1", "paper-table2", "paper-table3"])
def test_the_shipped_paper_specs_validate(tmp_path, sweep_data, name):
    weights = tmp_path / "fcn.safetensors"
    weights.write_bytes(b"not read at validation")
    spec = load_spec(find_spec(name), data=sweep_data, overrides={"fcn-weights": weights})
    options = [r.options for r in spec.rows]
    assert spec.seeds == (0, 1, 2) and spec.eval["fcn"] and spec.eval["ground-truth-row"]
    assert all(o["direction"] == "BtoA" and o["epochs"] + o["epochs_decay"] == 200 for o in options)
    expected = {
        "paper-table1": ("loss", ["l1", "gan", "cgan", "l1+gan", "l1+cgan"]),
        "paper-table2": ("netG", ["encoder_decoder_256", "encoder_decoder_256", "unet_256", "unet_256"]),
        "paper-table3": ("netD", ["pixel", "patch16", "patch70", "patch286"]),
    }[name]
    assert [o.get(expected[0]) for o in options] == expected[1]
    assert {o["batch_size"] for o in options} == ({10} if name == "paper-table2" else {1})
    if name == "paper-table2":
        assert [o["loss"] for o in options] == ["l1", "l1+cgan", "l1", "l1+cgan"]
    assert name in shipped_specs()


def test_a_shipped_spec_without_data_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"paper-table1\.toml: data: the spec names no dataset: set data = \"DIR\" or run with --data DIR"):
        load_spec(find_spec("paper-table1"))


def test_the_readme_example_spec_validates(tmp_path, sweep_data):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1
    path = tmp_path / "readme.toml"
    path.write_text(blocks[0].replace('"data/facades"', f'"{sweep_data}"'), encoding="utf-8")
    spec = load_spec(path)
    assert [r.label for r in spec.rows] == ["lambda 100", "lambda 10"]
    assert [r.options["lambda_l1"] for r in spec.rows] == [100.0, 10.0] and spec.threads == 2


def test_a_slurm_table_sets_the_jobs_and_the_flags_replace_it(tmp_path, sweep_data, cli, monkeypatch):
    extra = '[slurm]\npartition = "gpu"\ntime = 90\ngpus-per-job = 2\naccount = "lab"\n'
    spec = write_spec(tmp_path, sweep_data, spec_text(extra=extra))
    loaded = load_spec(spec)
    assert loaded.slurm == {"partition": "gpu", "time": 90, "gpus_per_job": 2, "account": "lab"}
    assert "slurm" not in loaded.to_json()  # where cells run is not what a cell is: no changed spec
    seen = {}

    def backend(name, **options):
        seen.update(name=name, **options)
        raise ConfigError("--backend slurm: stopped by the test")

    monkeypatch.setattr("p2ptools.sweep.backends.get_backend", backend)
    res = cli("sweep", "run", spec, "--out", tmp_path / "sweep", "--backend", "slurm", "--time", "30", "--account", "other")
    assert res.code == 1 and res.stderr == "error: --backend slurm: stopped by the test\n"
    assert seen == {"name": "slurm", "partition": "gpu", "time": 30, "gpus_per_job": 2, "account": "other", "executor": "slurm"}
    assert not (tmp_path / "sweep").exists()

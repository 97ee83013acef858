"""What a newcomer types first: usage errors, help texts, defaults that fit the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p_testutils import run_p2ptools

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("args", "message", "where"),
    [
        (["train", "--bogus"], "No such option: --bogus", "p2ptools train"),
        (["translate", "run", "--input"], "Option '--input' requires an argument.", "p2ptools translate"),
        (["eval", "--out"], "Option '--out' requires an argument.", "p2ptools eval"),
        (["models", "show"], "Missing argument", "p2ptools models show"),
        (["make-dataset", "combine", "--workers", "many"], "Invalid value for '--workers'", "p2ptools make-dataset combine"),
        (["no-such-command"], "No such command 'no-such-command'.", "p2ptools"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(cli, args, message, where):
    res = cli(*args)
    assert res.code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and message in res.stderr, res.stderr
    assert res.stderr.rstrip().endswith(f"(see '{where} --help')")
    assert "╭" not in res.stderr and "Usage:" not in res.stderr and res.stdout == ""


def test_usage_errors_one_line_in_a_real_process():
    res = run_p2ptools("train", "--bogus")
    assert res.code == 2 and res.stderr.startswith("error: No such option: --bogus (Possible options: ") and res.stderr.count("\n") == 1
    assert res.stderr.endswith(" (see 'p2ptools train --help')\n") and "--loss" in res.stderr


def test_readme_documents_usage_errors():
    text = README.read_text(encoding="utf-8")
    assert "Usage errors" in text and "exit code 2" in text


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # typer's help: no wrapping inside help texts


def _option_row(text: str, flag: str) -> str:
    """The table or help row of ``flag``: the line that starts with it (other rows' help texts may
    name it), else the first line that names it."""
    lines = text.splitlines()
    own = [line for line in lines if line.lstrip("│┃ ").startswith((f"{flag} ", f"{flag}/"))]
    return own[0] if own else next(line for line in lines if f" {flag} " in line)


def test_train_help_shows_resume_and_what_is_required(cli, wide):
    res = cli("train", "--help")
    assert res.code == 0
    assert "Continue the interrupted run RUN_DIR exactly" in _option_row(res.stdout, "--resume")
    assert "RUN_DIR" in _option_row(res.stdout, "--resume")
    for flag in ("--data", "--out"):
        assert "Required (unless --resume)." in _option_row(res.stdout, flag)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--resume"], "Option '--resume' requires an argument."),
        (["train", "--resume", "--no-progress"], "Invalid value for '--resume': needs a run directory, got '--no-progress'"),
    ],
)
def test_resume_without_a_run_directory(cli, args, message):
    res = cli(*args)
    assert res.code == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


@pytest.mark.parametrize(
    "args",
    [["--help"], ["train", "--help"], ["translate", "--help"], ["eval", "--help"], ["make-dataset", "combine", "--help"],
     ["models", "show", "--help"], ["datasets", "verify", "--help"], ["import-checkpoint", "--help"]],
)
def test_flags_are_not_typed_bool_and_arguments_read_like_usage(cli, wide, args):
    res = cli(*args)
    assert res.code == 0
    assert "<bool>" not in res.stdout and "{" not in res.stdout.split("\n\n")[0] + _usage(res.stdout)
    assert "Show this message and exit." in _option_row(res.stdout, "--help")


def _usage(text: str) -> str:
    return next(line for line in text.splitlines() if "Usage:" in line)


def test_usage_lines_name_the_arguments(cli, wide):
    assert _usage(cli("translate", "--help").stdout).split() == ["Usage:", "p2ptools", "translate", "[OPTIONS]", "RUN_DIR"]
    assert _usage(cli("models", "show", "--help").stdout).split()[-1] == "NAME"
    text = cli("eval", "--help").stdout
    assert _usage(text).split()[-1] == "[PATH]..."
    assert "More run directories" not in text
    assert "Folders to evaluate, one row each: run directories" in _option_row(text, "PATH")
    assert cli("translate").stderr.startswith("error: Missing argument 'RUN_DIR'.")


def test_models_show_lists_the_valid_choices(cli):
    from dataclasses import fields

    from p2ptools import registry
    from p2ptools.options import choices_text, flag_of

    res = cli("models", "show", "pix2pix")
    assert res.code == 0
    with_choices = [f for f in fields(registry.load("models", "pix2pix").Options) if choices_text(f)]
    assert len(with_choices) >= 5
    for f in with_choices:
        assert choices_text(f) in _option_row(res.stdout, flag_of(f)), f.name
    assert "batch, instance, none, syncbatch" in _option_row(res.stdout, "--norm")


def test_a_file_where_a_folder_is_expected_says_so(cli, tmp_path, tiny_data):
    """Issue 15.7 (done on main; covered here): the message says what the path is and what was expected."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    res = cli("train", "--data", notes, "--out", tmp_path / "run", "--workers", "0")
    assert res.code == 1 and "is a file; --data expects an aligned dataset folder" in res.stderr and str(notes) in res.stderr
    res = cli("make-dataset", "combine", "--source-a", tiny_data / "train", "--source-b", tiny_data / "train", "--split", "train",
              "--out", notes)
    assert res.code == 1 and res.stderr == f"error: --out {notes}: is a file; --out expects a folder (a new one, or one p2ptools wrote)\n"
    assert notes.read_text() == "mine"

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
    assert res.code == 2 and res.stderr == "error: No such option: --bogus (Possible options: --loss, --out) (see 'p2ptools train --help')\n"


def test_readme_documents_usage_errors():
    text = README.read_text(encoding="utf-8")
    assert "Usage errors" in text and "exit code 2" in text

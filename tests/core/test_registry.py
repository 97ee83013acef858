"""Registry: discovery without import, third-party distributions, duplicates, the contract smoke test."""

import os
import sys
from pathlib import Path

import pytest

from p2p_testutils import make_distribution, run_p2ptools
from p2ptools import registry
from p2ptools.errors import PluginError

THIRD_PARTY = '''
from dataclasses import dataclass, field
from p2ptools.plugin import ModelPlugin

@dataclass(frozen=True)
class Opts:
    depth: int = field(default=3, metadata={"help": "How deep the toy goes."})

class MyModel(ModelPlugin):
    """A third-party toy model."""
    name = "mymodel"
    version = "2.5"
    summary = "Toy model from another distribution."
    Options = Opts
    def train(self, options, request):
        raise NotImplementedError
    def load(self, run_dir, options):
        raise NotImplementedError

IMPORTED = True
'''


@pytest.fixture
def third_party(tmp_path: Path) -> Path:
    return make_distribution(tmp_path / "site", "mymodel-dist", "mymodel_pkg", {"p2ptools.models": {"mymodel": "mymodel_pkg:MyModel"}}, THIRD_PARTY)


def test_builtins_listed_without_import():
    before = set(sys.modules)
    infos = {i.name: i for i in registry.list_plugins("datasets")}
    assert {"combine", "cityscapes", "facades", "maps", "edges2shoes", "edges2handbags", "night2day", "inpainting", "colorization", "synthetic-scenes"} <= set(infos)
    assert infos["combine"].distribution == "p2ptools" and infos["combine"].summary.startswith("Pair two folders")
    assert "pix2pix" in registry.names("models")
    new = set(sys.modules) - before
    assert not any(m.startswith(("p2ptools_datasets.", "p2ptools_pix2pix.")) for m in new), new


def test_third_party_distribution_appears_in_cli(third_party: Path):
    env = {"PYTHONPATH": f"{third_party}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listed = run_p2ptools("models", env=env)
    assert listed.code == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "mymodel" in line)
    assert "2.5" in row and "mymodel-dist" in row and "Toy model" in row
    shown = run_p2ptools("models", "show", "mymodel", env=env)
    assert shown.code == 0 and "--depth" in shown.stdout and "How deep" in shown.stdout
    helped = run_p2ptools("train", "--model", "mymodel", "--help", env=env)
    assert helped.code == 0 and "--depth" in helped.stdout
    hidden = run_p2ptools("models", env={**env, "P2PTOOLS_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert hidden.code == 0 and "mymodel" not in hidden.stdout and "pix2pix" in hidden.stdout


def test_same_name_from_two_distributions_is_an_error(tmp_path: Path):
    site = make_distribution(tmp_path / "site", "clash-dist", "clash_pkg", {"p2ptools.datasets": {"combine": "clash_pkg:Thing"}}, "Thing = None\n")
    result = run_p2ptools("datasets", env={"PYTHONPATH": str(site)})
    assert result.code == 1
    assert "'combine' is registered by two distributions" in result.stderr
    assert "p2ptools (p2ptools_datasets.combine:CombineBuilder)" in result.stderr and "clash-dist (clash_pkg:Thing)" in result.stderr


def test_unknown_name_lists_available():
    with pytest.raises(PluginError, match=r"unknown dataset 'nope'; available: .*cityscapes.*combine"):
        registry.load("datasets", "nope")


def test_broken_plugins_fail_the_contract(tmp_path: Path, monkeypatch):
    code = "class NotAPlugin:\n    pass\n"
    site = make_distribution(tmp_path / "site", "broken-dist", "broken_pkg", {"p2ptools.models": {"broken": "broken_pkg:NotAPlugin"}}, code)
    result = run_p2ptools("models", "show", "broken", env={"PYTHONPATH": str(site)})
    assert result.code == 1 and "must be a subclass of p2ptools.plugin.ModelPlugin" in result.stderr


@pytest.mark.parametrize("name", registry.names("datasets"))
def test_every_registered_builder_honours_the_contract(name: str):
    cls = registry.load("datasets", name)
    assert cls.name == name and cls.source_layout
    cls()  # default options construct


@pytest.mark.parametrize("name", registry.names("models"))
def test_every_registered_model_honours_the_contract(name: str):
    cls = registry.load("models", name)
    assert cls.name == name
    cls.Options()


def test_templates_pass_the_contract():
    from p2ptools_datasets._template import MirrorBuilder
    from p2ptools_pix2pix._loop_template import PixelGANPlugin
    from p2ptools_pix2pix._template import ColorMapPlugin

    registry.check_contract("datasets", MirrorBuilder, "mirror-template")
    registry.check_contract("models", ColorMapPlugin, "colormap-template")
    registry.check_contract("models", PixelGANPlugin, "pixelgan-template")
    with pytest.raises(PluginError, match="registered as 'x' but its class says name = 'mirror-template'"):
        registry.check_contract("datasets", MirrorBuilder, "x")

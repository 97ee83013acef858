# Two entry points for a new machine (see README.md): `make demo` and `make test`.
# torch/torchvision are pinned to the versions this project is developed and tested with;
# pyproject.toml keeps compatible ranges for other installs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.p2ptools-installed
DEMO_OUT ?= p2ptools-demo

.PHONY: demo test install

# Printed after install and demo: the command is in $(BIN), not on PATH.
HINT := echo "p2ptools is installed in $(VENV)/: run $(BIN)/p2ptools --help, or '. $(BIN)/activate' and then p2ptools --help"

install: $(STAMP)
	@$(HINT)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	rm -rf p2ptools.egg-info  # a stale one in the checkout would shadow the installed entry points
	$(BIN)/python -m pip install --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/p2ptools demo --out $(DEMO_OUT)
	@$(HINT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile  # two workers, each test file in one of them (module fixtures such as the Ray cluster are started once)

# Two entry points for a new machine (see README.md): `make demo` and `make test`.
# torch/torchvision are pinned to the versions this project is developed and tested with;
# pyproject.toml keeps compatible ranges for other installs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.p2ptools-installed
DEMO_OUT ?= p2ptools-demo

.PHONY: demo test install

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/p2ptools demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

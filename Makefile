# Two entry points, each creating/refreshing its own virtualenv pinned by constraints.txt
# (torch==2.13.0 CPU; nothing here pulls CUDA wheels).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sonoseg-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sonoseg predict --out demo-output   # no inputs = the shipped sample DICOMs, no --model = the fast tier

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-output

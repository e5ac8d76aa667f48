# ember: `make demo` runs the seed example, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench protos protos-check lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/seed_chapter.py

protos: $(STAMP)
	$(PY) tools/protos.py

lint: $(STAMP)
	$(VENV)/bin/ruff check driver node operator tests bench examples tools

test: $(STAMP)
	$(PY) tools/protos.py --check
	$(VENV)/bin/ruff check driver node operator tests bench examples tools
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .tools build dist *.egg-info

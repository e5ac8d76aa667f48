# ember: `make demo` runs the seed example, `make test` runs the whole suite, `make fuzz`
# sends random frames to a head agent for a minute, `make docs` builds the site into site/.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test protos lint clean venv fuzz docs

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

# the documentation site (mkdocs.yml, docs/) into site/; strict: any warning fails the build
# (not --quiet: it hides the warnings from strict mode too)
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check driver node operator tests bench examples tools

test: $(STAMP) k8s-tools
	$(PY) tools/protos.py --check
	$(PY) tools/grafana_dashboards.py --check
	$(VENV)/bin/ruff check driver node operator tests bench examples tools
	$(VENV)/bin/mkdocs build --strict --site-dir site
	$(PY) -m pytest -q -p no:cacheprovider tests

# random frames against a running head agent for FUZZ_SECONDS (issue 11); prints its figures
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(PY) tools/fuzz_agent.py --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) .venv-ray .tools build dist *.egg-info .bench-results site

include make/k8s.mk
include make/bench.mk
include make/containers.mk

# Benchmarks: `make bench` compares ember with Ray on this machine, in one run.
#
# Included from the top Makefile (`include make/bench.mk`, after PYTHON/VENV/PY/
# STAMP are set, and with the Makefile's own `bench:` rule removed).
#
# Ray lives in its own venv, .venv-ray (ignored by git): Ray and ember pin
# grpcio/protobuf independently, so they never share an interpreter. bench/run.py
# runs ember's workloads with $(PY) and Ray's with .venv-ray/bin/python, each
# system in its own child processes. If Ray cannot be installed (no registry),
# the stamp is not written and the run goes on with "Ray not installed" columns.
#
#   make bench                          full run (about 1.5 minutes on 2 cores)
#   make bench-quick                    fewer repetitions (about 30 s)
#   make bench BENCH_ARGS='--only tasks,actor_rtt --systems ember'
#   make bench-sim                      500 simulated nodes against a real head (about 40 s):
#                                       head CPU, per-decision and per-task scheduling cost
#                                       (SIM_ARGS='--nodes 100 --window 5')
#
# Figures also go to .bench-results/bench.json, child logs to .bench-results/logs/.

PYTHON        ?= python3.11
VENV          ?= .venv
PY            ?= $(VENV)/bin/python
STAMP         ?= $(VENV)/.installed
RAY_VENV      ?= .venv-ray
RAY_PY        := $(RAY_VENV)/bin/python
RAY_STAMP     := $(RAY_VENV)/.installed
RAY_PACKAGES  ?= 'ray[default]>=2.40' 'numpy>=1.26' 'psutil>=5.9'
BENCH_JSON    ?= .bench-results/bench.json
BENCH_ARGS    ?=
SIM_ARGS      ?=

.PHONY: bench bench-quick bench-ray-venv bench-sim

bench-ray-venv: $(RAY_STAMP)

$(RAY_STAMP):
	@$(PYTHON) -m venv $(RAY_VENV) \
	  && $(RAY_PY) -m pip install --quiet --upgrade pip \
	  && $(RAY_PY) -m pip install --quiet $(RAY_PACKAGES) \
	  && touch $@ \
	  || echo "bench: could not install Ray into $(RAY_VENV); Ray's columns will be empty"

bench: $(STAMP) $(RAY_STAMP)
	$(PY) bench/run.py --ray-python $(RAY_PY) --json $(BENCH_JSON) $(BENCH_ARGS)

bench-quick: $(STAMP) $(RAY_STAMP)
	$(PY) bench/run.py --quick --ray-python $(RAY_PY) --json $(BENCH_JSON) $(BENCH_ARGS)

# the dashboard's cost on the head (agent CPU, RSS/PSS under 10k tasks, page open or not)
.PHONY: bench-dashboard
bench-dashboard: $(STAMP)
	$(PY) bench/dashboard_cost.py

bench-sim: $(STAMP)
	$(PY) bench/sim_cluster.py $(SIM_ARGS)

# minihpc's Makefile, for developers: the README's two commands, the course's
# two, tests, lint, benchmarks and docs. Everything a user does with the
# cluster is a `minihpc` verb (python3 -m minihpc --help), which needs nothing
# but python3.
#
# Sizing and knobs for cluster-up (make cluster-up NODES=3); empty means
# minihpc's default (`python3 -m minihpc up --help` lists them and their ranges).
NODES ?=
NODE_CPUS ?=
NODE_MEM_MB ?=
BIGMEM_MB ?=
GPUS ?=
READY_TIMEOUT ?=
# Each node's private scratch (/scratch, a tmpfs), in MiB.
SCRATCH_MB ?=
# The login node's sshd, published on the host's 127.0.0.1 (minihpc ssh).
SSH_PORT ?=
# The cluster's private IPv4 network (each service at a fixed address in it).
SUBNET ?=
# NFS-style client profile (minihpc nfs list); empty keeps the active one (fresh cluster: off).
NFS_PROFILE ?=
PYTEST_ARGS ?=
# make destroy YES=1: remove the cluster without asking.
YES ?=
# make bench BENCH=nfs: which benchmark (minihpc bench --help); NAME=after for the suite's table.
BENCH ?=
NAME ?=

export NODES NODE_CPUS NODE_MEM_MB BIGMEM_MB GPUS SCRATCH_MB SSH_PORT SUBNET READY_TIMEOUT NFS_PROFILE

MINIHPC := python3 -m minihpc
VENV := .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help bootstrap cluster-up destroy lab confirm pressure test smoke test-unit test-action lint lock bench bench-prove bench-mpi bench-class docs

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  knobs: NODES NODE_CPUS NODE_MEM_MB BIGMEM_MB GPUS SCRATCH_MB SSH_PORT SUBNET READY_TIMEOUT NFS_PROFILE (defaults: $(MINIHPC) up --help)"
	@echo "  everything else: $(MINIHPC) --help"

bootstrap: ## install/start the Docker engine and Compose v2 on this host (Debian, root)
	cluster/bootstrap-host.sh

cluster-up: ## bring up (or resize to NODES) the cluster and wait until it is ready
	$(MINIHPC) up

# Asks first (the accounting database and every file on /shared go); YES=1 does not.
destroy: ## remove containers, volumes and generated secrets (images are kept); asks unless YES=1
	$(MINIHPC) destroy $(if $(filter 1 yes true,$(YES)),--yes)

# The course's own commands (its text says make lab and make confirm).
lab: ## the module's commissioning sequence as printed (profiles/slurm), its expected failures, then the fix
	$(MINIHPC) lab

confirm: ## every core from a clean lab state; pass/fail table; proofs in .proof/
	$(MINIHPC) confirm

# The timeline picture needs matplotlib: the venv has it.
pressure: $(VENV)/.installed ## 200 short jobs through slurm (GROUPED=1: 10 per job): cluster full, every job COMPLETED
	$(PY) -m minihpc pressure $(if $(GROUPED),--grouped)

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r tests/requirements.txt
	touch $@

test: bootstrap $(VENV)/.installed ## bring the cluster up and run the whole test suite (host-only tests beside it)
	tests/run-suite.sh $(PY) $(PYTEST_ARGS)

smoke: bootstrap $(VENV)/.installed ## the capabilities on another Slurm release, SLURM=22.05|26.05, or another Snakemake stack, SNAKEMAKE=8.30.0: its cluster up, the tests marked smoke (or stack)
	@[ -n "$(SLURM)$(SNAKEMAKE)" ] || { echo "smoke: name the release with SLURM=, e.g. make smoke SLURM=22.05, or the stack with SNAKEMAKE=, e.g. SNAKEMAKE=8.30.0 (make test runs the default's whole suite)" >&2; exit 2; }
	tests/run-smoke.sh $(PY) "$(SLURM)" "$(SNAKEMAKE)" $(PYTEST_ARGS)

test-unit: $(VENV)/.installed ## unit and integration tests only (no cluster needed)
	$(PY) -m pytest -m "not cluster" $(PYTEST_ARGS) tests

# Needs no other minihpc cluster on the machine (make destroy first); removes its own.
# Its run step alone (run on tests/workflows/byow) is proven on make test's cluster: tests/cluster/test_action.py.
test-action: $(VENV)/.installed ## run action.yml as a GitHub runner would, install to cluster removed: prove (every fault) on tests/workflows/prove
	$(PY) .ci/action-check tests/workflows/prove --with prove=true --expect-exit 0

lint: $(VENV)/.installed ## ruff and shellcheck
	$(VENV)/bin/ruff check minihpc cluster tests bench nfs scratch
	shellcheck -x cluster/*.sh tests/run-suite.sh tests/run-smoke.sh tests/keep-logs.sh .ci/run

lock: $(VENV)/.installed ## re-resolve cluster/locks/ (the cluster's Python, per Snakemake stack and Debian release; LOCKS= names some) from minihpc/stacks.py and scipy-stack.in
	$(PY) -m minihpc.stacks $(LOCKS)

bench: $(VENV)/.installed ## one benchmark, BENCH=cluster|nfs|staging|faults|throughput|suite|prove|plugin -> bench/results/ (BENCH=cluster SLURM=22.05: another release's; BENCH=plugin ENFORCE=none; BENCH=report: the .md again from the JSON)
	@[ -n "$(BENCH)" ] || { echo "bench: name one with BENCH=<name>, e.g. make bench BENCH=nfs; see $(MINIHPC) bench --help" >&2; exit 2; }
	$(PY) -m minihpc bench $(BENCH) $(if $(filter suite,$(BENCH)),report $(if $(NAME),--name $(NAME))) $(if $(and $(filter cluster,$(BENCH)),$(SLURM)),--slurm $(SLURM)) $(if $(and $(filter plugin,$(BENCH)),$(ENFORCE)),--enforce $(ENFORCE))

bench-prove: $(VENV)/.installed ## what a proof costs: minihpc prove against one plain run -> bench/results/prove.json
	$(PY) -m minihpc bench prove

bench-class: $(VENV)/.installed ## a class of 30: adding and removing it, slurmrestd's memory and answer time, the live page's refresh and memory -> bench/results/class.json
	$(PY) -m minihpc bench class

bench-mpi: $(VENV)/.installed ## the MPI demo on 1..6 ranks (minihpc up --nodes 3) and what module load costs a job -> bench/results/mpi.json
	$(PY) -m minihpc bench mpi

docs: $(VENV)/.installed ## build the docs site (MkDocs, strict: a broken link fails) into .site/
	$(PY) -m mkdocs build --strict --site-dir .site

# minihpc: a real SLURM cluster in containers for Snakemake labs.
# Sizing and knobs (override on the command line: make cluster-up NODES=3).
NODES ?= 2
NODE_CPUS ?= 2
NODE_MEM_MB ?= 3000
READY_TIMEOUT ?= 180
# Each node's private scratch (/scratch, a tmpfs), in MiB.
SCRATCH_MB ?= 512
# NFS-style client profile (see `make nfs-profiles`); empty keeps the active one (fresh cluster: off).
NFS_PROFILE ?=
LAB_USER ?= student
PYTEST_ARGS ?=

export NODES NODE_CPUS NODE_MEM_MB SCRATCH_MB READY_TIMEOUT NFS_PROFILE

COMPOSE := cluster/compose.sh
VENV := .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help bootstrap cluster-up cluster-down destroy status scratch scratch-clean shell logs test test-unit lock lint bench-cluster bench-nfs bench-staging nfs-profiles nfs-profile

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-24s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  knobs: NODES=$(NODES) (1-16) NODE_CPUS=$(NODE_CPUS) NODE_MEM_MB=$(NODE_MEM_MB) SCRATCH_MB=$(SCRATCH_MB) READY_TIMEOUT=$(READY_TIMEOUT) NFS_PROFILE=$(NFS_PROFILE)"

bootstrap: ## install/start the Docker engine and Compose v2 on this host (Debian, root)
	cluster/bootstrap-host.sh

cluster-up: ## bring up (or resize to NODES) the cluster and wait until it is ready
	cluster/up.sh

cluster-down: ## stop the cluster, keep its data and secrets
	@[ -f .run/compose.nodes.yml ] || { echo "cluster-down: no cluster state in .run/ (nothing to stop)"; exit 0; }; \
	$(COMPOSE) down --remove-orphans

destroy: ## remove containers, volumes and generated secrets (images are kept)
	@if [ -f .run/compose.nodes.yml ]; then $(COMPOSE) down --remove-orphans --volumes; fi
	rm -rf .run

status: ## nodes, queue and service health
	@$(COMPOSE) ps --format 'table {{.Service}}\t{{.State}}\t{{.Health}}'
	@echo; $(COMPOSE) exec -T login sinfo -N -l
	@echo; $(COMPOSE) exec -T login squeue
	@echo; $(COMPOSE) exec -T login minihpc-nfs show

scratch: ## each node's scratch: usage and files (NODE=c1 for one node)
	@python3 lab/scratch.py $(NODE)

scratch-clean: ## empty every node's scratch (NODE=c1 for one), as an epilog would; refused while jobs run
	@python3 lab/scratch.py --clean $(NODE)

nfs-profiles: ## list the NFS-style client's named profiles
	@python3 -m nfs.ctl list

# Profile switch at runtime, no restart: make nfs-profile PROFILE=lag-10 [SET="delay=7"] [FAULT="EIO:op=read,path=/x/*,count=1"]
nfs-profile: ## switch every node's NFS client to PROFILE (SET=k=v..., FAULT=spec...)
	@[ -n "$(PROFILE)" ] || { echo "nfs-profile: name one with PROFILE=<name>; choose from:"; python3 -m nfs.ctl list; exit 2; }
	@python3 -m nfs.ctl check $(PROFILE) $(foreach s,$(SET),--set '$(s)') $(foreach f,$(FAULT),--fault '$(f)') >/dev/null
	$(COMPOSE) exec -T login minihpc-nfs set $(PROFILE) $(foreach s,$(SET),--set '$(s)') $(foreach f,$(FAULT),--fault '$(f)')

shell: ## a login shell on the login node as the lab user
	$(COMPOSE) exec -u $(LAB_USER) -w /home/$(LAB_USER) login bash -l

logs: ## follow the logs of every service (SERVICE=name for one)
	$(COMPOSE) logs -f --tail 50 $(SERVICE)

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r tests/requirements.txt
	touch $@

test-unit: $(VENV)/.installed ## unit tests only (no cluster needed)
	$(PY) -m pytest -m "not cluster" $(PYTEST_ARGS) tests

test: bootstrap $(VENV)/.installed cluster-up ## bring the cluster up and run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS) tests

lint: $(VENV)/.installed ## ruff and shellcheck
	$(VENV)/bin/ruff check cluster tests bench lab nfs
	shellcheck cluster/*.sh .ci/run

lock: ## re-resolve cluster/requirements.lock from cluster/requirements.in
	cluster/lock.sh

bench-cluster: $(VENV)/.installed ## measure cold/warm bring-up and idle memory -> bench/results/cluster.json
	$(PY) bench/cluster_bringup.py

bench-staging: ## staged vs direct small-file job on the cluster under NFS profile linux -> bench/results/staging.json
	python3 bench/staging.py

bench-nfs: $(VENV)/.installed ## NFS client vs raw volume, and the small-file slowdown under rtt-5ms -> bench/results/nfs.json
	$(PY) bench/nfs_client.py

LAB := python3 lab/confirm.py
.PHONY: lab core1 core2 lab-latency lab-staging core4 core5 confirm demos \
	demo-unwritable-scratch demo-scratch-full demo-prefix-mismatch demo-no-plugin demo-latency

lab: ## the module's commissioning sequence on the cluster, through the slurm profile
	$(LAB) --lab

core1: ## Core 1: executor selection (sacct evidence) and log retention
	$(LAB) core1

core2: ## Core 2: retries, poison outputs, incomplete semantics, atomic writes
	$(LAB) core2

lab-latency: ## Core 3, latency: --latency-wait below/above the NFS delay (profile lag-10) and with it off
	$(LAB) core3-latency

lab-staging: ## Core 3, staging: job IO through node scratch (profiles/slurm-staging), proven from each node's files
	$(LAB) core3-staging

core4: ## Core 4: generated unit tests as a gate
	$(LAB) core4

core5: ## Core 5: drift reports and --drop-metadata
	$(LAB) core5

confirm: ## every core from a clean lab state; pass/fail table; proofs in .proof/
	$(LAB)

# Instructor demos: one real failure each, its signature, and the fix.
demos: ## every instructor demo below
	$(LAB) --demos

demo-unwritable-scratch: ## demo: the job's scratch prefix is not writable (PermissionError)
	$(LAB) $@

demo-scratch-full: ## demo: node scratch full (ENOSPC in the job)
	$(LAB) $@

demo-prefix-mismatch: ## demo: storage-local-copies declared shared, prefixes node-local (copies left on scratch)
	$(LAB) $@

demo-no-plugin: ## demo: the staging profile without snakemake-storage-plugin-fs installed
	$(LAB) $@

demo-latency: ## demo: --latency-wait shorter than the NFS lag (Missing files after N seconds)
	$(LAB) $@

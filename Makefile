# minihpc: a real SLURM cluster in containers for Snakemake labs.
# Sizing and knobs (override on the command line: make cluster-up NODES=3).
# Empty means minihpc's default (`python3 -m minihpc up --help` lists them).
NODES ?=
NODE_CPUS ?=
NODE_MEM_MB ?=
BIGMEM_MB ?=
GPUS ?=
READY_TIMEOUT ?=
# Each node's private scratch (/scratch, a tmpfs), in MiB.
SCRATCH_MB ?=
# The login node's sshd, published on the host's 127.0.0.1 (make ssh).
SSH_PORT ?=
# The cluster's private IPv4 network (each service at a fixed address in it).
SUBNET ?=
# NFS-style client profile (see `make nfs-profiles`); empty keeps the active one (fresh cluster: off).
NFS_PROFILE ?=
PYTEST_ARGS ?=
# make destroy YES=1: remove the cluster without asking.
YES ?=

export NODES NODE_CPUS NODE_MEM_MB BIGMEM_MB GPUS SCRATCH_MB SSH_PORT SUBNET READY_TIMEOUT NFS_PROFILE

# The CLI; needs nothing but python3 (the Makefile is its thin alias).
MINIHPC := python3 -m minihpc
VENV := .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help bootstrap cluster-up cluster-down destroy status scratch scratch-clean shell ssh site-check logs test test-unit test-action lock lint bench-cluster bench-nfs bench-staging bench-faults bench-throughput bench-suite timeline nfs-profiles nfs-profile

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-24s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  knobs: NODES NODE_CPUS NODE_MEM_MB BIGMEM_MB GPUS SCRATCH_MB SSH_PORT SUBNET READY_TIMEOUT NFS_PROFILE (defaults: $(MINIHPC) up --help)"

bootstrap: ## install/start the Docker engine and Compose v2 on this host (Debian, root)
	cluster/bootstrap-host.sh

cluster-up: ## bring up (or resize to NODES) the cluster and wait until it is ready
	$(MINIHPC) up

cluster-down: ## stop the cluster, keep its data and secrets
	$(MINIHPC) down

# Asks first (the accounting database and every file on /shared go); YES=1 does not.
destroy: ## remove containers, volumes and generated secrets (images are kept); asks unless YES=1
	$(MINIHPC) destroy $(if $(filter 1 yes true,$(YES)),--yes)

status: ## nodes, queue and service health
	@$(MINIHPC) status

scratch: ## each node's scratch: usage and files (NODE=c1 for one node)
	@$(MINIHPC) scratch $(NODE)

scratch-clean: ## empty every node's scratch (NODE=c1 for one), as an epilog would; refused while jobs run
	@$(MINIHPC) scratch --clean $(NODE)

nfs-profiles: ## list the NFS-style client's named profiles
	@$(MINIHPC) nfs list

# Profile switch at runtime, no restart: make nfs-profile PROFILE=lag-10 [SET="delay=7"] [FAULT="EIO:op=read,path=/x/*,count=1"]
nfs-profile: ## switch every node's NFS client to PROFILE (SET=k=v..., FAULT=spec...)
	@[ -n "$(PROFILE)" ] || { echo "nfs-profile: name one with PROFILE=<name>; choose from:"; $(MINIHPC) nfs list; exit 2; }
	$(MINIHPC) nfs set $(PROFILE) $(foreach s,$(SET),--set '$(s)') $(foreach f,$(FAULT),--fault '$(f)')

shell: ## a login shell on the login node as the lab user
	$(MINIHPC) shell

ssh: ## an SSH session on the login node as the lab user, through its sshd on 127.0.0.1:SSH_PORT
	$(MINIHPC) ssh

site-check: ## the site proofs over SSH against SITE (a site file; default this cluster's: minihpc site local)
	$(MINIHPC) site check $(if $(SITE),$(SITE),"$$($(MINIHPC) site local)")

logs: ## follow the logs of every service (SERVICE=name for one)
	$(MINIHPC) logs $(SERVICE)

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r tests/requirements.txt
	touch $@

test-unit: $(VENV)/.installed ## unit tests only (no cluster needed)
	$(PY) -m pytest -m "not cluster" $(PYTEST_ARGS) tests

test: bootstrap $(VENV)/.installed ## bring the cluster up and run the whole test suite (host-only tests beside it)
	tests/run-suite.sh $(PY) $(PYTEST_ARGS)

# Needs no other minihpc cluster on the machine (make destroy first); removes its own.
test-action: $(VENV)/.installed ## run action.yml as a GitHub runner would, on tests/workflows/byow (installs minihpc in a venv)
	$(PY) .ci/action-check tests/workflows/byow --with workflow=wf --with args=--keep-going \
		--with 'fetch=results/grouped/*.txt' --expect-exit 1

lint: $(VENV)/.installed ## ruff and shellcheck
	$(VENV)/bin/ruff check minihpc cluster tests bench nfs scratch
	shellcheck cluster/*.sh tests/run-suite.sh .ci/run

lock: ## re-resolve cluster/requirements.lock from cluster/requirements.in
	cluster/lock.sh

bench-cluster: ## measure cold/warm bring-up and idle memory -> bench/results/cluster.json
	$(MINIHPC) bench cluster

bench-staging: ## staged vs direct small-file job on the cluster under NFS profile linux -> bench/results/staging.json
	$(MINIHPC) bench staging

bench-faults: ## how long each fault takes to heal; a workflow with a node killed vs clean -> bench/results/faults.json
	$(MINIHPC) bench faults

# Writes .proof/timeline.png and .svg; RUN=<SLURM run ID>, or SINCE=/UNTIL= (sacct times), ALL_USERS=1.
timeline: $(VENV)/.installed ## picture of the last run's jobs (lanes per node and CPU, queue below) -> .proof/timeline.{png,svg}
	$(PY) -m minihpc timeline -o .proof/timeline $(if $(RUN),--run $(RUN)) $(if $(SINCE),--since $(SINCE)) \
		$(if $(UNTIL),--until $(UNTIL)) $(if $(ALL_USERS),--all-users)

bench-throughput: ## trivial jobs/s and a 24-part fan-out local vs slurm vs grouped, before/after tuning -> bench/results/throughput.{json,md}
	$(MINIHPC) bench throughput

bench-suite: ## where the last make test's time went (NAME=after also writes bench/results/suite-NAME.{json,md})
	$(MINIHPC) bench suite report $(if $(NAME),--name $(NAME))

bench-nfs: ## NFS client vs raw volume, and the small-file slowdown under rtt-5ms -> bench/results/nfs.json
	$(MINIHPC) bench nfs

.PHONY: lab core1 core2 lab-latency lab-staging core4 core5 core6 confirm busy busy-stop proofs-busy pressure demos demo-oom demo-timeout demo-partition \
	demo-unwritable-scratch demo-scratch-full demo-prefix-mismatch demo-no-plugin demo-latency demo-group-too-big

lab: ## the module's commissioning sequence as printed (profiles/slurm), its expected failures, then the fix
	$(MINIHPC) lab

core1: ## Core 1: executor selection (sacct evidence) and log retention
	$(MINIHPC) core 1

core2: ## Core 2: retries, poison outputs, incomplete semantics, atomic writes
	$(MINIHPC) core 2

lab-latency: ## Core 3, latency: --latency-wait below/above the NFS delay (profile lag-10) and with it off
	$(MINIHPC) core 3-latency

lab-staging: ## Core 3, staging: job IO through node scratch (profiles/slurm-staging), proven from each node's files
	$(MINIHPC) core 3-staging

core4: ## Core 4: generated unit tests as a gate
	$(MINIHPC) core 4

core5: ## Core 5: drift reports and --drop-metadata
	$(MINIHPC) core 5

core6: ## Core 6: memory and runtime that grow with the attempt (sacct proofs), the efficiency report
	$(MINIHPC) core 6

confirm: ## every core from a clean lab state; pass/fail table; proofs in .proof/
	$(MINIHPC) confirm

busy: ## another user's higher-priority jobs hold all CPUs but one for MINUTES (default 10); undo: busy-stop
	$(MINIHPC) busy start $(if $(MINUTES),--minutes $(MINUTES))

busy-stop: ## cancel the busy load
	$(MINIHPC) busy stop

proofs-busy: ## Core 1 and Core 3 (latency, staging) again while another user's load holds all CPUs but one
	$(MINIHPC) core 1 3-latency 3-staging --busy

pressure: $(VENV)/.installed ## 200 short jobs through slurm (GROUPED=1: 10 per job): cluster full, pending reasons, all COMPLETED; proofs + timeline
	$(PY) -m minihpc pressure $(if $(GROUPED),--grouped)

# Instructor demos: one real failure each, its signature, and the fix.
demos: ## every instructor demo below
	$(MINIHPC) demo --all

demo-unwritable-scratch: ## demo: the job's scratch prefix is not writable (PermissionError)
	$(MINIHPC) demo $@

demo-scratch-full: ## demo: node scratch full (ENOSPC in the job)
	$(MINIHPC) demo $@

demo-prefix-mismatch: ## demo: storage-local-copies declared shared, prefixes node-local (copies left on scratch)
	$(MINIHPC) demo $@

demo-no-plugin: ## demo: the staging profile without snakemake-storage-plugin-fs installed
	$(MINIHPC) demo $@

demo-latency: ## demo: --latency-wait shorter than the NFS lag (Missing files after N seconds)
	$(MINIHPC) demo $@

demo-oom: ## demo: a job over its memory request, killed by Slurm (Exceeded job memory limit)
	$(MINIHPC) demo $@

demo-timeout: ## demo: a job over its runtime (TIMEOUT, DUE TO TIME LIMIT)
	$(MINIHPC) demo $@

demo-partition: ## demo: rules over the default partition's memory and time (sbatch refuses), fixed in a workflow profile
	$(MINIHPC) demo $@

demo-group-too-big: ## demo: a rule group wider than a node (sbatch refuses it, Snakemake hides why), fixed with --cores
	$(MINIHPC) demo $@

# Faults, one command each (minihpc fault --help). NODE names a compute node or,
# for kill/stop/start/restart, any service: make fault-kill NODE=c1, then make fault-start NODE=c1.
.PHONY: fault-kill fault-stop fault-start fault-restart fault-drain fault-resume fault-cut fault-reconnect \
	fault-stop-snakemake fault-nfs-eio fault-nfs-clear fault-reboot

fault-kill: ## fault: kill NODE's container at once (a power cut); undo: fault-start
	$(MINIHPC) fault kill $(NODE)

fault-stop: ## fault: stop NODE's container cleanly (NODE=slurmdbd, db, ...); undo: fault-start
	$(MINIHPC) fault stop $(NODE)

fault-start: ## start NODE again and wait until it is healthy
	$(MINIHPC) fault start $(NODE)

fault-restart: ## fault: restart NODE (NODE=slurmctld, slurmdbd, db, login, c1 ...) and wait until healthy
	$(MINIHPC) fault restart $(NODE)

fault-drain: ## fault: drain compute node NODE in Slurm (REASON=text); undo: fault-resume
	$(MINIHPC) fault drain $(NODE) $(if $(REASON),--reason '$(REASON)')

fault-resume: ## return drained compute node NODE to service
	$(MINIHPC) fault resume $(NODE)

fault-cut: ## fault: cut compute node NODE off the network; undo: fault-reconnect
	$(MINIHPC) fault cut $(NODE)

fault-reconnect: ## reconnect cut compute node NODE and wait until Slurm sees it up
	$(MINIHPC) fault reconnect $(NODE)

fault-stop-snakemake: ## fault: Ctrl-C every Snakemake on the login node (SIGNAL=TERM or KILL for others)
	$(MINIHPC) fault stop-snakemake --signal $(or $(SIGNAL),INT)

fault-nfs-eio: ## fault: writes to FAULT_PATH (a glob under /shared) fail with EIO on every node; undo: fault-nfs-clear
	$(MINIHPC) fault nfs-eio '$(FAULT_PATH)'

fault-nfs-clear: ## drop the shared filesystem's fault rules
	$(MINIHPC) fault nfs-clear

fault-reboot: ## fault: restart the Docker engine (a host reboot) and wait until every service is healthy
	$(MINIHPC) fault reboot

"""minihpc: a real SLURM cluster in containers, to test Snakemake workflows
against before a real cluster sees them."""

import os
import re
from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent


def _tree() -> Path:
    """The files the cluster is built from (docker-compose.yml, cluster/, nfs/,
    lab/, profiles/, scratch/, bench/): the checkout this package sits in, or
    the copy an installed wheel carries in minihpc/_tree."""
    installed = _PACKAGE / "_tree"
    return installed if installed.is_dir() else _PACKAGE.parent


ROOT = _tree()
INSTALLED = ROOT != _PACKAGE.parent


def _state() -> Path:
    """Where run state lives: MINIHPC_STATE_DIR if set; else the checkout
    (git-ignored .run/ and .proof/); else, installed, the user's state home."""
    if os.environ.get("MINIHPC_STATE_DIR"):
        return Path(os.environ["MINIHPC_STATE_DIR"]).expanduser().resolve()
    if not INSTALLED:
        return ROOT
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "minihpc"


STATE = _state()

# The cluster's name on this machine (MINIHPC_CLUSTER, as kind's --name): its
# Compose project, so its containers (NAME-SERVICE-1) and network
# (NAME_default), and its own state beside the default's (.run-NAME,
# .proof-NAME). Two clusters side by side need two names, two SSH ports and
# two subnets (minihpc up refuses a port or subnet another holds).
DEFAULT_NAME = "minihpc"
NAME = os.environ.get("MINIHPC_CLUSTER") or DEFAULT_NAME
# What Compose takes as a project name, and safe in a path and a shell word.
NAME_RULE = re.compile(r"[a-z][a-z0-9-]{0,29}")
_SUFFIX = "" if NAME == DEFAULT_NAME else f"-{NAME}" if NAME_RULE.fullmatch(NAME) else "-invalid"


def check_name() -> None:
    """Refuse a MINIHPC_CLUSTER that is no name (every entry point calls it
    before acting: the paths above hold no invalid name)."""
    if not NAME_RULE.fullmatch(NAME):
        from minihpc.errors import BadInput
        raise BadInput(f"MINIHPC_CLUSTER={NAME[:40]!r} is not a cluster name",
                       "give 1 to 30 lowercase letters, digits and dashes, starting with a letter "
                       "(e.g. MINIHPC_CLUSTER=second), or leave it unset for the default cluster")


# Generated configs, secrets, the cluster's facts (cluster.json).
RUN_DIR = STATE / f".run{_SUFFIX}"
# The nodes' Compose file in a run directory (minihpc.configs writes it, cluster/compose.sh
# reads it): that it exists is what says a cluster was made from this state.
NODES_FILE_NAME = "compose.nodes.yml"
NODES_FILE = RUN_DIR / NODES_FILE_NAME
# The lab's proofs (minihpc confirm).
PROOF_DIR = STATE / f".proof{_SUFFIX}"
# Benchmark results: committed beside the scripts in a checkout.
BENCH_RESULTS = ROOT / "bench/results" if not INSTALLED else STATE / "bench"


def tree_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the tree's scripts (cluster/compose.sh,
    secrets.sh, ...): `env` (else this process's) with this cluster's name and run directory.
    Set where each starts, so that importing minihpc changes no one's
    environment."""
    return {**(os.environ if env is None else env), "MINIHPC_RUN_DIR": str(RUN_DIR), "MINIHPC_CLUSTER": NAME}

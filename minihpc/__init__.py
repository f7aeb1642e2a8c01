"""minihpc: a real SLURM cluster in containers, to test Snakemake workflows
against before a real cluster sees them."""

from pathlib import Path

__version__ = "0.1.0"

# The checkout the cluster is built from (docker-compose.yml, cluster/, nfs/,
# lab/, profiles/), and where its run state lives (git-ignored).
ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"

"""The scratch policy: one place for what every node's /scratch is.

A tmpfs per node (memory is used only by what jobs write), sized by SCRATCH_MB,
declared to Slurm as TmpFS so `sbatch --tmp` is honoured, world-writable with
the sticky bit like /tmp: each user makes their own directory and nobody can
remove another's. A job stages under its own prefix, which
profiles/slurm-staging names (tests/unit/test_profiles.py keeps them equal).
"""

MOUNT = "/scratch"
DEFAULT_MB = 512
MIN_MB, MAX_MB = 16, 65_536
MODE = "1777"
# remote-job-local-storage-prefix and local-storage-prefix of profiles/slurm-staging.
JOB_PREFIX = MOUNT + "/$USER/job-$SLURM_JOB_ID"
MAIN_PREFIX = MOUNT + "/$USER/main"


def tmpfs(size_mb: int) -> str:
    """The Compose tmpfs entry of a node's scratch."""
    return f"{MOUNT}:size={size_mb}m,mode={MODE}"


def env_file(size_mb: int) -> str:
    """What the node itself reads (cluster/entrypoint.sh, healthcheck.sh,
    nodecheck.sh) to make and check its scratch on every start: Docker
    re-creates the tmpfs on a restart without its mode= (Engine 20.10)."""
    return f"SCRATCH={MOUNT}\nSCRATCH_MB={size_mb}\nSCRATCH_MODE={MODE}\n"


def job_prefix(user: str, job_id: str) -> str:
    """Where job `job_id` of `user` stages its files on its node."""
    return JOB_PREFIX.replace("$USER", user).replace("$SLURM_JOB_ID", job_id)

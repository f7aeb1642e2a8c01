"""The scratch policy: one place for what every node's /scratch is.

A tmpfs per node (memory is used only by what jobs write), sized by SCRATCH_MB,
declared to Slurm as TmpFS so `sbatch --tmp` is honoured. Root's and closed to
users (not a sticky /tmp, where anyone could make /scratch/<victim> first and
receive the victim's staged files): root makes each user's directory at the
node's start and each job's at the job's start (cluster/scratchdir.py), 0700
and the user's own. A job stages under its own prefix, which
profiles/slurm-staging names (tests/unit/test_profiles.py keeps them equal).
"""

MOUNT = "/scratch"
DEFAULT_MB = 512
MIN_MB, MAX_MB = 16, 65_536
MODE = "755"
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

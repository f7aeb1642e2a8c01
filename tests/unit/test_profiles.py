"""The lab's Snakemake profiles say what the lessons need, and stay in step."""

from __future__ import annotations

from pathlib import Path

import yaml

from minihpc.course import staging as staging_lab
from scratch import policy

ROOT = Path(__file__).resolve().parents[2]


def profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def test_staging_profile_is_the_slurm_profile_plus_staging() -> None:
    slurm, staging = profile("slurm"), profile("slurm-staging")
    assert {k: staging.get(k) for k in slurm} == slurm
    assert set(staging) - set(slurm) == {"default-storage-provider", "shared-fs-usage",
                                         "local-storage-prefix", "remote-job-local-storage-prefix"}


def test_staging_sends_job_io_to_each_nodes_scratch() -> None:
    staging = profile("slurm-staging")
    assert staging["default-storage-provider"] == "fs"
    # Without input-output job IO is staged; without storage-local-copies each
    # job stages for itself on its node (ERRATA 8).
    usage = set(staging["shared-fs-usage"])
    assert usage == {"persistence", "software-deployment", "sources", "source-cache"}
    # Both prefixes are set (the remote one does not fall back to the local one)
    # and lie on node-local scratch; the remote one is per job.
    # They are scratch's policy (scratch/policy.py), which the lab and the client read.
    local, remote = staging["local-storage-prefix"], staging["remote-job-local-storage-prefix"]
    assert (local, remote) == (policy.MAIN_PREFIX, policy.JOB_PREFIX)
    assert local.startswith(f"{policy.MOUNT}/$USER/") and "$SLURM_JOB_ID" in remote
    # The lab looks for the copies where the profile puts them.
    user = {"$USER": staging_lab.LAB_USER}
    assert expand(local, user) == staging_lab.MAIN_PREFIX
    assert expand(remote, {**user, "$SLURM_JOB_ID": "42"}) == staging_lab.job_prefix("42")


def expand(path: str, env: dict[str, str]) -> str:
    for k, v in env.items():
        path = path.replace(k, v)
    return path

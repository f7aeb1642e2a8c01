"""The lab's Snakemake profiles say what the lessons need, and stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from minihpc import policy as cluster_policy
from minihpc.course import staging as staging_lab
from minihpc.facts import LAB_ACCOUNT, Facts
from minihpc.topology import Topology
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


def test_slurm_profile_sets_what_a_site_asks_for() -> None:
    """default-resources as a site writes them: account, partition, memory,
    time; each valid on the default cluster's default partition."""
    res = profile("slurm")["default-resources"]
    assert set(res) == {"slurm_account", "slurm_partition", "mem_mb", "runtime"}
    t = Topology.from_env({})
    part = cluster_policy.default_partition(t)
    assert res["slurm_account"] == LAB_ACCOUNT
    assert res["slurm_partition"] == part.name
    # Fits one CPU's default share of a standard node, so jobs still pack two per node.
    assert 0 < res["mem_mb"] <= t.mem_mb // t.cpus
    h, m, _ = (int(x) for x in part.max_time.split(":"))
    assert 0 < res["runtime"] <= h * 60 + m


def test_profiles_name_nothing_of_the_containers() -> None:
    """A profile is what a site copies: no host, node, mount or container of minihpc's in it."""
    facts = Facts(nodes=Topology.from_env({}).names, cpus=1, mem_mb=1, scratch_mb=1)
    for name in ("slurm", "slurm-staging"):
        text = (ROOT / "profiles" / name / "config.yaml").read_text()
        values = " ".join(str(v) for v in flat(profile(name)))
        for word in (*facts.slurm_services, "docker", "container", facts.shared, "/etc/minihpc", "/opt/minihpc"):
            assert not re.search(rf"(?<![\w/-]){re.escape(word)}(?![\w-])", values), (name, word)
        assert "minihpc" not in text, name


def flat(value: object) -> list[object]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (k, *flat(v))]
    if isinstance(value, list):
        return [x for v in value for x in flat(v)]
    return [value]

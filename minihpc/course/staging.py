"""Core 3, staging: job IO through each node's scratch (profiles/slurm-staging).

The evidence comes from the nodes' own filesystems, read as root while the job
runs and after it: the job's inputs and outputs under its per-job prefix on
the node that runs it and on no other, the output on the shared filesystem
afterwards, and the job's scratch emptied. The same rule run through
profiles/slurm, beside it in a lab of its own, is the contrast: its shards go
to /shared and scratch stays empty (the module's "storage plugin not active"
signature).

On a site (on_site, `minihpc site check`) the evidence comes from steps of
the site's user, no root: the same staged run through the site's scratch.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from minihpc.cluster import Cluster
from minihpc.course.cores import SLURM, fresh, submitted_ids
from minihpc.course.labctl import LAB_USER, Lab, Labs, Result
from minihpc.proofs import Proof, tail
from scratch import policy

STAGING = "--profile profiles/slurm-staging"
INPUT = "data/records.txt"
TARGET = "results/staging/summary.txt"
# Seconds the job holds at most after writing its output: time to read its
# node's scratch. Once it is read, release_command ends the hold.
HOLD = 25
# How shard_work's output starts with the Snakefile's defaults.
COMPLETE = "records=40000 shards=2000 "


# Where profiles/slurm-staging puts the main process's local copies, for the lab user.
MAIN_PREFIX = policy.MAIN_PREFIX.replace("$USER", LAB_USER)


def release_command(staged_out: str) -> str:
    """The command (the job's user's, on its node) that ends the job's hold (lab/scripts/shard_work.py)."""
    return f"touch {shlex.quote(staged_out + '.release')}"


def shard_log(job: str) -> str:
    """The SLURM log of a shard_work job (slurm-logdir in the profiles); `*` for all."""
    return f"logs/slurm/rule_shard_work/{job}.log"


def job_prefix(job: str) -> str:
    """The lab user's per-job scratch prefix of a SLURM job."""
    return policy.job_prefix(LAB_USER, job)


@dataclass
class Snapshot:
    """Regular files under /scratch on every node at one moment."""

    by_node: dict[str, list[str]]

    def under(self, prefix: str) -> dict[str, list[str]]:
        return {n: [p for p in ps if p.startswith(prefix + "/")] for n, ps in self.by_node.items()}

    def text(self, title: str) -> str:
        lines = [f"# {title}: files under /scratch, read as root on each node"]
        for node, paths in self.by_node.items():
            lines.append(f"{node}: {len(paths)} file(s)")
            lines += [f"  {p}" for p in paths[:20]] + ([f"  ... {len(paths) - 20} more"] if len(paths) > 20 else [])
        return "\n".join(lines) + "\n"


def snapshot(client: Cluster, nodes: list[str]) -> Snapshot:
    return Snapshot({n: client.scratch(n).files for n in nodes})


def running_job(lab: Lab, timeout: float = 180) -> tuple[str, str]:
    """(job id, node) of the first running SLURM job from the lab's directory
    (the user's other jobs, other labs side by side, may run beside it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [x.split() for x in lab.client.sh("squeue --me -h -t RUNNING -o '%i %N %Z'").out.splitlines()]
        mine = [(job, node) for job, node, wd in (r for r in rows if len(r) == 3) if wd == lab.workdir]
        if mine:
            return mine[0]
        time.sleep(1)
    raise TimeoutError(f"no job of {LAB_USER} from {lab.workdir} started running within {timeout:.0f} s")


def wait_for_file(client: Cluster, node: str, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path in client.scratch(node, path).files:
            return True
        time.sleep(0.5)
    return False


def worked_in(output: str) -> str | None:
    m = re.search(r"shard_work: \d+ shards in (\S+)", output)
    return m.group(1) if m else None


def core3_staging(labs: Labs, prefix: str = "core3") -> Proof:
    """Staging to node-local scratch, proven from the nodes' filesystems."""
    c, lab = fresh(labs, "core3", f"{prefix}-staging")
    client = labs.client
    nodes = ["login", *client.facts.nodes]
    lab.proof("core3.staging.profile", lab.sh("cat profiles/slurm-staging/config.yaml"))
    # The contrast, the same rule without staging (its shards go to /shared), runs beside the staged run,
    # in a lab of its own: its job writes nothing to any scratch, and every node's scratch is read again
    # once both have ended.
    _, plain = fresh(labs, "core3", f"{prefix}-staging-direct")
    direct_proc = plain.spawn(f"snakemake {SLURM} -- {TARGET}")

    # The staged run, watched from outside while its job holds on its node.
    proc = lab.spawn(f"snakemake {STAGING} --config staging_hold={HOLD} -- {TARGET}")
    try:
        job, node = running_job(lab)
    except TimeoutError as e:
        run = lab.collect(proc)
        plain.collect(direct_proc)
        lab.proof("core3.staging.run", run)
        c.check("the staged job starts running on a compute node", False, f"{e}\n{run.out[-600:]}")
        return c
    prefix_dir = job_prefix(job)
    staged_out = f"{prefix_dir}/fs/{TARGET}"
    appeared = wait_for_file(client, node, staged_out, timeout=120)
    during = snapshot(client, nodes)
    shared_during = lab.exists(TARGET)
    lab.sh(release_command(staged_out), service=node)
    run = lab.collect(proc)
    after = snapshot(client, nodes)
    left_dirs = lab.sh(f"find {prefix_dir} -type d 2>/dev/null | sort", service=node, user="root")
    content = lab.read(TARGET)
    log = lab.sh(f"grep -E '^shard_work:|Retrieving|Storing|Cleaning' {shard_log(job)}")
    lab.proof("core3.staging.run", run, f"job {job} ran on {node}; its prefix: {prefix_dir}\n",
              during.text(f"while job {job} ran (output written, job holding)"),
              f"{TARGET} on the shared filesystem while the job ran: {'yes' if shared_during else 'no'}\n",
              after.text("after the run"), left_dirs, log, lab.sh(f"cat {TARGET}"))

    # The contrast, once it has ended too.
    direct = plain.collect(direct_proc)
    direct_after = snapshot(client, nodes)
    direct_ids = submitted_ids(direct.out)
    direct_log = plain.sh(f"grep -h '^shard_work:' {shard_log(direct_ids[-1] if direct_ids else '0')}")
    same = lab.sh(f"cmp {TARGET} {plain.workdir}/{TARGET} && echo identical")
    lab.proof("core3.staging.direct", direct, direct_log, direct_after.text("after the run without staging"), same)

    mine = during.under(prefix_dir)
    elsewhere = {n: [p for p in ps if f"/job-{job}/" in p] for n, ps in during.by_node.items() if n != node}
    c.exit("the staged run exits 0", run)
    c.check("it submitted one SLURM job", len(submitted_ids(run.out)) == 1, str(submitted_ids(run.out)))
    c.check(f"the job's output appeared on {node}'s scratch while it ran", appeared, staged_out)
    c.check(f"...beside its staged input, under {prefix_dir}", f"{prefix_dir}/fs/{INPUT}" in mine[node], str(mine))
    c.check("...and under no other node's scratch", not any(elsewhere.values()), str(elsewhere))
    main_copy = f"{MAIN_PREFIX}/fs/{INPUT}"
    c.check("the local rule's output went through the login node's scratch (local-storage-prefix)",
            main_copy in during.by_node["login"], str(during.by_node["login"][:10]))
    c.check("...and was removed from it after the run", main_copy not in after.by_node["login"],
            str(after.by_node["login"][:10]))
    c.check("the job worked on scratch (its shards were next to the staged output)",
            worked_in(log.out) == f"{staged_out}.shards", log.out[-400:])
    c.check("the output was not on the shared filesystem while the job ran", not shared_during,
            f"{TARGET} present during the job: {shared_during}")
    c.check("the job staged it out, complete", (content or "").startswith(COMPLETE), repr(content))
    c.check("after the job its scratch holds no file (Snakemake removed its local copies)",
            after.under(prefix_dir)[node] == [], str(after.under(prefix_dir)))
    c.exit("without staging the run exits 0", direct)
    c.check("...its job worked on /shared", worked_in(direct_log.out) == f"{plain.workdir}/{TARGET}.shards",
            direct_log.out)
    c.check("...and left every node's scratch empty", not any(direct_after.by_node.values()),
            direct_after.text("after the run without staging"))
    c.says("...with the same output as the staged run", same, "identical")
    return c


def on_site(labs: Labs) -> Proof:
    """Staging to the site's node-local scratch (profiles/slurm-staging with
    its prefixes there), proven on the node by steps of the user's own: one
    inside the running job's allocation (srun --jobid --overlap), one after
    it on the same node. No root. `labs` is a site's (its scratch given)."""
    client, site = labs.client, labs.site
    core, lab = fresh(labs, "staging", "staging")
    proc = lab.spawn(f"snakemake {STAGING} --config staging_hold={HOLD} -- {TARGET}")
    job = node = ""
    deadline = time.monotonic() + 180
    while not job and time.monotonic() < deadline and proc.proc.poll() is None:
        rows = [x.split() for x in client.sh("squeue --me -h -t RUNNING -o '%i %N %Z'").out.splitlines()]
        job, node = next(((j, n) for j, n, wd in (r for r in rows if len(r) == 3) if wd == lab.workdir), ("", ""))
        time.sleep(1)
    if not job:
        run = lab.collect(proc)
        lab.proof("site.staging", run)
        core.check("the staged job starts running on a compute node", False, tail(run))
        return core
    prefix = f"{site.scratch}/{site.user}/job-{job}"
    staged_out = f"{prefix}/fs/{TARGET}"
    look = f"srun --jobid={job} --overlap --nodelist={node} --ntasks=1 find {shlex.quote(prefix)} -type f"
    during = Result(look, 1, "", 0)
    for _ in range(60):
        during = lab.sh(look)
        if staged_out in during.out.split():
            break
        time.sleep(2)
    shared_during = lab.exists(TARGET)
    lab.sh(f"srun --jobid={job} --overlap --nodelist={node} --ntasks=1 {release_command(staged_out)}")
    run = lab.collect(proc)
    after = client.sh(f"find {shlex.quote(prefix)} -type f 2>/dev/null; echo checked on $(hostname)", node=node)
    content = lab.read(TARGET)
    lab.proof("site.staging", run, f"job {job} ran on {node}; its prefix: {prefix}\n", during,
              f"{TARGET} on the shared filesystem while the job ran: {'yes' if shared_during else 'no'}\n",
              after, lab.sh(f"cat {TARGET}"))
    core.exit("the staged run exits 0", run)
    core.check(f"the job's output appeared under {prefix} on {node} (seen by a step of the user's own in the "
               "job's allocation)", staged_out in during.out.split(), tail(during))
    core.check("...beside its staged input", f"{prefix}/fs/{INPUT}" in during.out.split(), tail(during))
    core.check("the output was not on the shared filesystem while the job ran", not shared_during,
               f"present during the job: {shared_during}")
    core.check("the job staged it out, complete", (content or "").startswith(COMPLETE), repr(content))
    core.check(f"after the job, {node}'s scratch holds none of its files (a job of the user's own looked)",
               f"checked on {node}" in after.out and prefix not in after.out, tail(after))
    return core

"""The profile audit of `minihpc prove` (minihpc.audit): each check against
the jobs of a run, and the profile it suggests."""

from __future__ import annotations

import yaml

from minihpc.audit import FINDING, NOTE, OK, audit, suggest
from minihpc.runner import Job

GOOD = {"executor": "slurm", "jobs": 20, "retries": 2, "slurm-keep-successful-logs": True,
        "slurm-init-seconds-before-status-checks": 5, "default-resources": {"slurm_account": "lab", "mem_mb": 1000}}


def job(rule: str, state: str = "COMPLETED", elapsed: int = 30, req: str = "1000M", rss: str = "140000K",
        limit: str = "00:30:00", job_id: str = "7", error: str = "") -> Job:
    return Job(job_id, rule, "", "short", "c1", state, "0:0", elapsed, limit, req, rss, "1", error)


def checks(a) -> dict[tuple[str, str], str]:
    return {(c.area, c.rule): c.verdict for c in a.checks}


def test_a_good_profile_and_run_have_no_finding() -> None:
    a = audit(GOOD, [job("part"), job("part", job_id="8")], [], 1000, 6.0)
    assert FINDING not in checks(a).values(), a.checks
    assert checks(a)[("memory", "part")] == checks(a)[("runtime", "part")] == OK
    assert a.changes == {}


def test_a_kill_a_later_attempt_survived_is_a_note_with_the_request_that_spares_it() -> None:
    a = audit(GOOD, [job("big", "OUT_OF_MEMORY", rss="400M", req="400M", job_id="9"), job("big", rss="720M",
                                                                                              req="800M")], [], None, 6)
    mem = next(c for c in a.checks if c.area == "memory")
    assert (mem.verdict, mem.rule) == (NOTE, "big") and "job(s) 9" in mem.seen and "later attempt" in mem.seen
    assert "`mem_mb: 1100` for big" in mem.fix, "1.5 x 720 MiB, up to the next 100"
    assert a.changes == {}, "the run survived it: nothing to change for a pass"


def test_a_rule_killed_at_every_request_gets_one_that_grows_with_each_attempt() -> None:
    """A killed job's MaxRSS is its limit, not its need: with no job of the
    rule finished, the suggestion is twice the most asked, times the attempt."""
    a = audit(GOOD, [job("big", "OUT_OF_MEMORY", rss="200M", req="200M", job_id=str(i)) for i in (9, 10, 11)],
              [], None, 6)
    mem = next(c for c in a.checks if c.area == "memory")
    assert (mem.verdict, mem.rule) == (FINDING, "big") and "job(s) 9, 10, 11" in mem.seen
    assert "never finished" in mem.seen
    assert a.changes["set-resources"] == {"big": {"mem_mb": "400*attempt"}}
    assert mem.fix.startswith("`mem_mb: 400*attempt` for big")
    assert suggest(GOOD, a.changes)["set-resources"] == {"big": {"mem_mb": "400*attempt"}}
    # Sampled enforcement (OverMemoryKill: FAILED, the log saying so) saw it use 634 MiB before
    # the kill: what fits that, if it is more. FAILED past its request, with no log, is one too.
    kill = "slurmstepd-c1: error: StepId=17.batch exceeded memory limit (664186880 > 209715200), being killed"
    for error in (kill, ""):
        a = audit(GOOD, [job("big", "FAILED", rss="649216K", req="200M", error=error)], [], None, 6)
        assert a.changes["set-resources"] == {"big": {"mem_mb": "1000*attempt"}}, "1.5 x 634, up to the next 100"
    a = audit(GOOD, [job("big", "FAILED", rss="100M", req="200M", error="ValueError: bad input")], [], None, 6)
    assert checks(a)[("memory", "big")] == OK, "failed for another reason"


def test_a_job_killed_at_every_attempt_is_found_though_another_job_of_its_rule_finished() -> None:
    """Attempts are a job's (its rule and wildcards): s=b killed twice is a
    finding even though s=a finished; s=a's own kill, survived, is not."""
    def attempt(wc: str, state: str, job_id: str) -> Job:
        j = job("big", state, rss="300M" if state == "COMPLETED" else "500M", req="400M", job_id=job_id)
        j.wildcards = wc
        return j
    a = audit(GOOD, [attempt("s=a", "FAILED", "1"), attempt("s=a", "COMPLETED", "2"),
                     attempt("s=b", "FAILED", "3"), attempt("s=b", "FAILED", "4")], [], None, 6)
    mem = next(c for c in a.checks if c.area == "memory")
    assert mem.verdict == FINDING and "job(s) 3, 4" in mem.seen, mem
    assert a.changes["set-resources"] == {"big": {"mem_mb": "800*attempt"}}


def test_a_job_ended_by_its_time_limit_is_found_with_a_runtime_that_fits() -> None:
    a = audit(GOOD, [job("slow", "TIMEOUT", elapsed=61, limit="00:01:00")], [], None, 6)
    assert checks(a)[("runtime", "slow")] == FINDING
    assert a.changes["set-resources"] == {"slow": {"runtime": 3}}


def test_a_rule_quicker_than_slurms_overhead_and_rules_run_outside_slurm() -> None:
    a = audit(GOOD, [job("tiny", elapsed=2), job("real", elapsed=40)], ["fail", "make"], None, 6.5)
    assert checks(a)[("tiny rules", "tiny")] == FINDING and ("tiny rules", "real") not in checks(a)
    assert checks(a)[("profile applied", "")] == FINDING
    assert "fail, make" in next(c.seen for c in a.checks if c.area == "profile applied")


def test_no_retries_deleted_logs_and_too_many_jobs_are_found_and_fixed_in_the_suggestion() -> None:
    bare = {"executor": "slurm", "jobs": 5000, "default-resources": {"mem_mb": 4000}}
    a = audit(bare, [job("part", req="4000M")], [], 1000, 6)
    found = {c.area for c in a.checks if c.verdict == FINDING}
    assert found == {"retries", "logs", "jobs"}, a.checks
    assert checks(a)[("memory", "part")] == NOTE, "4000 MiB asked, 137 used: a note, not a failure"
    new = suggest(bare, a.changes)
    assert (new["retries"], new["slurm-keep-successful-logs"], new["jobs"]) == (2, True, 1000)
    assert audit(new, [job("part", req="4000M")], [], 1000, 6).changes == {}, "the suggestion passes its own audit"


def test_the_suggestion_keeps_the_profiles_settings_and_spellings() -> None:
    conf = yaml.safe_load("executor: slurm\nset_resources:\n  a:\n    runtime: 5\nlatency_wait: 30\n")
    new = suggest(conf, {"set-resources": {"a": {"mem_mb": 300}, "b": {"runtime": 2}}, "retries": 2})
    assert new == {"executor": "slurm", "latency_wait": 30, "retries": 2,
                   "set-resources": {"a": {"runtime": 5, "mem_mb": 300}, "b": {"runtime": 2}}}


def test_a_failed_jobs_reason_includes_slurmstepds_memory_kill() -> None:
    """What runner._why_failed keeps of a failed job's log: Python's errors,
    and slurmstepd's memory and time kills (the audit reads the first)."""
    from minihpc.runner import ERROR_LINE
    log = ("Traceback (most recent call last):\n  ...\nMemoryError: cannot allocate\n"
           "slurmstepd-c1: error: StepId=17.batch exceeded memory limit (664186880 > 209715200), being killed\n"
           "slurmstepd-c1: error: *** JOB 18 ON c2 CANCELLED AT 2026-12-06T16:25:24 DUE TO TIME LIMIT ***\n"
           "slurmstepd-c1: error: *** JOB 24 ON c1 CANCELLED AT 2026-12-06T16:25:24 ***\nerror: nothing\n")
    assert [m.group(0) for m in ERROR_LINE.finditer(log)] == [
        "MemoryError: cannot allocate",
        "slurmstepd-c1: error: StepId=17.batch exceeded memory limit (664186880 > 209715200), being killed",
        "slurmstepd-c1: error: *** JOB 18 ON c2 CANCELLED AT 2026-12-06T16:25:24 DUE TO TIME LIMIT ***"]


def test_a_tiny_rule_is_told_the_group_size_that_fits_its_node() -> None:
    """2 CPUs and 3000 MiB on c1, 1 CPU and 1000 MiB a job: 2 fit (CPUs);
    with 4 CPUs, 3 (memory); never more than the rule had jobs."""
    tiny = [job("tiny", elapsed=2, job_id=str(i)) for i in range(5)]
    fix = next(c.fix for c in audit(GOOD, tiny, [], None, 10, nodes={"c1": (2, 3000)}).checks
               if c.area == "tiny rules")
    assert "`--group-components tiny=2`" in fix and "localrules: tiny" in fix, fix
    fix = next(c.fix for c in audit(GOOD, tiny, [], None, 10, nodes={"c1": (4, 3000)}).checks
               if c.area == "tiny rules")
    assert "`--group-components tiny=3`" in fix, fix
    fix = next(c.fix for c in audit(GOOD, tiny[:1], [], None, 10, nodes={"c1": (8, 9000)}).checks
               if c.area == "tiny rules")
    assert "group" not in fix, "one job: nothing to group"


# Snakemake's output when sbatch refuses a group's job (snakemake-executor-plugin-slurm 2.8.0).
REFUSED_OUTPUT = """Error in group g:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Batch job submission failed: Requested \
node configuration is not available'.
    sbatch call:
        sbatch --parsable --job-name x --mem 8000 --cpus-per-task=4
Error in rule part:
    message: SLURM-job '4' failed, SLURM status is: 'FAILED'. Reason: Unknown.
"""


# The plugin 2.8.0's: the group never became a SLURM job, and sbatch's words are lost
# (a real run, 2026-12-06: --groups part=g --group-components g=4, mem_mb=2000 each).
LOST_OUTPUT = """[Sun Dec  6 16:33:23 2026] Group job g (jobs in lexicogr. order):

    [Sun Dec  6 16:33:23 2026]
    rule part:
        output: results/parts/2.txt
        jobid: 4
        resources: tmpdir=<TBD>, mem_mb=2000, mem=2 GB, mem_mib=1908, slurm_account=lab, runtime=30
Shell command: seq 1 20 > results/parts/2.txt

    [Sun Dec  6 16:33:23 2026]
    rule part:
        output: results/parts/3.txt
        jobid: 5
        resources: tmpdir=<TBD>, mem_mb=2000, mem=2 GB, mem_mib=1908, slurm_account=lab, runtime=30
Shell command: seq 1 30 > results/parts/3.txt
[Sun Dec  6 16:33:23 2026]
Finished jobid: 6 (Rule: stamp)
[Sun Dec  6 16:33:23 2026]
    message: Error in group g
    jobs:
        rule part:
            jobid: 4
    Error in rule part:
        message: None
"""


def test_a_group_that_never_became_a_slurm_job_is_found_with_its_members_requests() -> None:
    from minihpc.audit import Refusal, refused
    assert refused(LOST_OUTPUT) == [Refusal("group g", "", 4000, 2)]
    a = audit(GOOD, [job("stamp")], [], None, 6, nodes={"c1": (2, 3000)}, refusals=refused(LOST_OUTPUT))
    fit = next(c for c in a.checks if c.area == "node fit")
    assert "never became a SLURM job; its jobs together ask 2 CPUs and 4000 MiB" in fit.seen, fit


def test_a_refusal_is_its_own_blocks_and_a_groups_threads_are_each_members() -> None:
    """A failed rule's block before a refused one does not take its words; a
    member's threads are 1 unless Snakemake prints them; blank lines cost nothing."""
    from minihpc.audit import Refusal, refused
    out = ("Error in rule a:\n    message: SLURM-job '4' failed\nError in rule b:\n    message: SLURM sbatch failed. "
           "The error message was 'sbatch: error: CPU count per node can not be satisfied'.\n")
    assert refused(out) == [Refusal("rule b", "sbatch: error: CPU count per node can not be satisfied")]
    a = audit(GOOD, [], [], None, 6, nodes={"c1": (2, 3000)}, refusals=refused(out))
    assert [c.area for c in a.checks if c.verdict == FINDING and c.rule == "b"] == ["node fit"]
    mixed = LOST_OUTPUT.replace("        jobid: 4\n", "        jobid: 4\n        threads: 4\n", 1)
    assert refused(mixed) == [Refusal("group g", "", 4000, 5)]
    assert refused(" \n" * 200_000 + "x") == [], "linear in blank lines"


def test_a_job_sbatch_refused_for_its_size_names_the_largest_node() -> None:
    from minihpc.audit import Refusal, refused
    assert refused(REFUSED_OUTPUT) == [Refusal("group g", "sbatch: error: Batch job submission failed: Requested "
                                                          "node configuration is not available")]
    a = audit(GOOD, [job("part")], [], None, 6, nodes={"c1": (2, 3000), "c2": (2, 6000)},
              refusals=refused(REFUSED_OUTPUT))
    fit = next(c for c in a.checks if c.area == "node fit")
    assert (fit.verdict, fit.rule) == (FINDING, "g") and "sbatch refused the group g job" in fit.seen
    assert "(the largest node: 2 CPUs, 6000 MiB)" in fit.fix and "--group-components" in fit.fix

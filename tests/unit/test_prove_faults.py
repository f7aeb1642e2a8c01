"""`minihpc prove`'s faults (minihpc.prove_faults), apart from the cluster:
which faults a --faults value means and what it refuses before anything
runs, the output an EIO lands on, and each fault's verdict from what the
run showed. The faults landing on a real run: tests/cluster/test_prove.py."""

from __future__ import annotations

import math

import pytest

from minihpc.audit import FINDING, OK, audit
from minihpc.errors import BadInput
from minihpc.facts import Facts
from minihpc.lag import Lag
from minihpc.prove_faults import (
    CHANGED,
    FAILED,
    NAMES,
    NOT_APPLIED,
    SURVIVED,
    Choice,
    Injector,
    Outcome,
    choose,
    eio_target,
    first_node,
    in_service,
    judge,
)
from minihpc.runner import Job, Report

TWO = Facts(nodes=["c1", "c2"], cpus=2, mem_mb=3000, scratch_mb=512)
ONE = Facts(nodes=["c1"], cpus=2, mem_mb=3000, scratch_mb=512)
GOOD = {"executor": "slurm", "retries": 2, "latency-wait": 30}


def test_every_fault_by_default_on_minihpc_none_on_a_site_and_none_when_asked() -> None:
    assert choose(None, TWO, site=False) == Choice(NAMES)
    assert choose("default", TWO, site=False).faults == NAMES
    assert choose("none", TWO, site=False).faults == ()
    assert choose(None, None, site=True).faults == ()
    assert choose("none", None, site=True).faults == ()


def test_a_list_is_taken_in_the_order_faults_land_and_slow_nfs_may_name_its_profile() -> None:
    c = choose("node-kill, eio,slow-nfs=delay-3", TWO, site=False)
    assert c.faults == ("slow-nfs", "eio", "node-kill") and c.slow_profile == "delay-3"
    assert choose("slow-nfs", TWO, site=False).slow_profile == "lag-10"


@pytest.mark.parametrize(("spec", "facts", "site", "said"), [
    ("fire", TWO, False, "no fault 'fire'"),
    ("eio=3", TWO, False, "no fault 'eio=3'"),
    ("eio,eio", TWO, False, "names eio twice"),
    ("slow-nfs=molasses", TWO, False, "no NFS profile 'molasses'"),
    ("node-kill", ONE, False, "needs at least 2 compute nodes"),
    ("busy,eio", ONE, False, "needs at least 2 compute nodes"),
    ("eio", None, True, "never applied to a real site"),
    ("default", None, True, "never applied to a real site"),
])
def test_bad_faults_are_refused_with_the_fix(spec: str, facts: Facts | None, site: bool, said: str) -> None:
    with pytest.raises(BadInput) as e:
        choose(spec, facts, site=site)
    assert said in e.value.what and e.value.fix


def test_a_fault_needing_two_nodes_names_the_rest_as_the_fix() -> None:
    with pytest.raises(BadInput) as e:
        choose("eio,node-kill", ONE, site=False)
    assert "--faults eio" in e.value.fix and "--nodes 2" in e.value.fix


def test_the_eio_lands_on_an_output_a_slurm_job_made() -> None:
    outputs = {"results/parts/0.txt": "part", "results/parts/3.txt": "part", "results/sum.txt": "total"}
    assert eio_target(outputs, {"part"}) == ("results/parts/3.txt", "part")
    assert eio_target(outputs, {"where"}) is None
    # The workflow names its outputs: a name that would read as more of the rule is never the target.
    hostile = {"results/x,count=99,scope=node": "part", "results/*": "part", "../other.prove-faults/a": "part",
               "results/[ab].txt": "part", "results/a b.txt": "part"}
    assert eio_target(hostile, {"part"}) is None
    assert eio_target({**hostile, "results/0.txt": "part"}, {"part"}) == ("results/0.txt", "part")


def job(job_id: str, rule: str, wildcards: str, state: str = "COMPLETED", error: str = "") -> Job:
    return Job(job_id, rule, wildcards, "short", "c1", state, "0:0", 12, "00:30:00", "1000M", "1000K", "1", error)


def report(jobs: list[Job], rc: int = 0) -> Report:
    return Report("wf", "/shared/x.prove-faults", "profiles/slurm", "the workflow's own", "snakemake", rc, 60.0,
                  "run", jobs)


def injector(**landed: list[str]) -> Injector:
    inj = Injector(None, Choice(tuple(n for n in NAMES if n.replace("-", "_") in landed)),  # type: ignore[arg-type]
                   "/shared/x.prove-faults", ("results/parts/3.txt", "part"), [])
    for name, hit in landed.items():
        o = inj.outcomes[name.replace("_", "-")]
        o.at_s, o.hit = 5.0, hit
    return inj


def test_a_fault_whose_work_ran_again_with_the_same_outputs_survived() -> None:
    inj = injector(node_kill=["11", "12"], slurmctld_restart=["14"])
    jobs = [job("11", "part", "0", "NODE_FAIL"), job("12", "part", "1", "NODE_FAIL"), job("13", "part", "0"),
            job("14", "part", "1")]
    out = {o.fault: o for o in judge(inj, report(jobs), "", [], GOOD, [])}
    assert out["node-kill"].verdict == SURVIVED and "(2) was done again" in out["node-kill"].why
    assert out["slurmctld-restart"].verdict == SURVIVED


def test_a_fault_whose_work_was_never_done_again_failed_with_the_reason_and_the_setting() -> None:
    inj = injector(node_kill=["11"], eio=["x"])
    jobs = [job("11", "part", "0", "NODE_FAIL"), job("12", "part", "3", "FAILED", "CalledProcessError: ...")]
    out = {o.fault: o for o in judge(inj, report(jobs, rc=1), "", [], {"executor": "slurm"}, ["12"])}
    kill, eio = out["node-kill"], out["eio"]
    assert kill.verdict == FAILED and "job 11 (part[0]) ended NODE_FAIL on c1" in kill.why
    assert "retries: 0" in kill.why and "retries: 2" in kill.fix
    assert eio.verdict == FAILED and eio.hit == ["12"] and "CalledProcessError" in eio.why
    assert "retries: 2" in eio.fix


def test_an_eio_no_job_failed_on_was_not_applied() -> None:
    inj = injector(eio=[])
    out = judge(inj, report([job("12", "part", "3")]), "", [], GOOD, [])
    assert out[0].verdict == NOT_APPLIED and "results/parts/3.txt" in out[0].why and out[0].at_s is None


def test_a_survived_fault_whose_work_made_other_bytes_changed_the_meaning() -> None:
    inj = injector(node_kill=["11"], busy=["13"])
    jobs = [job("11", "part", "0", "NODE_FAIL"), job("12", "part", "0"), job("13", "other", "")]
    out = {o.fault: o for o in judge(inj, report(jobs), "", [("results/parts/0.txt", "part")], GOOD, [])}
    assert out["node-kill"].verdict == CHANGED and "results/parts/0.txt" in out["node-kill"].why
    # A load holds the whole run: any difference under it is its verdict too.
    assert out["busy"].verdict == CHANGED


def test_missing_files_under_the_slow_filesystem_fail_it_with_the_latency_wait_the_lag_needs() -> None:
    inj = injector(slow_nfs=[])
    inj.lag = Lag([9.6, 10.2])
    said = "Missing files after 2 seconds. This might be due to filesystem latency."
    out = judge(inj, report([job("12", "part", "3")], rc=1), f"...\n{said}\n...", [], {"latency-wait": 2}, [])
    assert out[0].verdict == FAILED and out[0].why.startswith("Missing files after 2 seconds")
    assert out[0].fix == "`latency-wait: 26`"


def test_a_fault_the_run_gave_no_moment_is_not_applied_and_fails_nothing() -> None:
    inj = injector()
    inj.outcomes = {"node-kill": Outcome("node-kill", why="the run ended before one of its jobs ran")}
    out = judge(inj, report([]), "", [], GOOD, [])
    assert out[0].verdict == NOT_APPLIED and out[0].at_s is None


def test_the_audit_sets_latency_wait_against_the_lag_measured() -> None:
    short = audit({"executor": "slurm", "latency-wait": 5}, [], [], None, 10.0, Lag([10.4]))
    lw = [c for c in short.checks if c.area == "latency-wait"]
    assert lw[0].verdict == FINDING and "10.4 s at worst" in lw[0].seen and short.changes["latency-wait"] == 26
    default = audit({"executor": "slurm"}, [], [], None, 10.0, Lag([6.0]))
    assert [c.verdict for c in default.checks if c.area == "latency-wait"] == [FINDING]  # Snakemake's own 5 s
    enough = audit({"executor": "slurm", "latency-wait": 30}, [], [], None, 10.0, Lag([10.4]))
    assert [c.verdict for c in enough.checks if c.area == "latency-wait"] == [OK]
    unmeasured = audit({"executor": "slurm"}, [], [], None, 10.0, None)
    assert [c for c in unmeasured.checks if c.area == "latency-wait"] == []


def test_a_node_is_in_service_when_it_takes_jobs_and_answers() -> None:
    assert [s for s in ("idle", "mix", "alloc", "comp", "idle~", "down*", "idle*", "drain", "drng", "fail")
            if in_service(s)] == ["idle", "mix", "alloc", "comp", "idle~"]


def test_a_lost_job_is_the_fault_it_ended_by_not_every_fault_that_saw_it() -> None:
    """slurmctld's restart and the load saw the job the node kill lost: only
    the kill failed; a job the run cancelled as it failed is no fault's."""
    inj = injector(busy=["11", "12"], slurmctld_restart=["11", "12"], node_kill=["11"])
    jobs = [job("11", "part", "0", "NODE_FAIL"), job("12", "part", "1", "CANCELLED by 1000")]
    out = {o.fault: o.verdict for o in judge(inj, report(jobs, rc=1), "", [], {"retries": 0}, [])}
    assert out == {"busy": SURVIVED, "slurmctld-restart": SURVIVED, "node-kill": FAILED}


def test_a_job_hit_that_the_runs_report_lacks_is_not_counted_as_survived() -> None:
    inj = injector(node_kill=["999"])
    out = judge(inj, report([job("11", "part", "0")]), "", [], GOOD, [])
    assert out[0].verdict == FAILED and "999" in out[0].why and "not among the run's jobs" in out[0].why


def test_a_fault_the_run_gave_no_moment_fails_the_proof() -> None:
    from minihpc.prove_faults import BAD
    assert NOT_APPLIED in BAD and SURVIVED not in BAD


def test_on_one_node_the_default_leaves_out_what_needs_two_and_says_so() -> None:
    c = choose(None, ONE, site=False)
    assert c.faults == ("slow-nfs", "eio", "session-lost", "slurmctld-restart") and c.left_out == ("busy", "node-kill")


@pytest.mark.parametrize(("nodelist", "first"), [("c1", "c1"), ("c[1-2]", "c1"), ("c[2,4]", "c2"), ("c10", "c10")])
def test_the_node_killed_is_the_first_of_the_jobs_nodes(nodelist: str, first: str) -> None:
    assert first_node(nodelist) == first


def test_a_probe_whose_file_never_showed_is_a_finding_not_silence() -> None:
    a = audit({"executor": "slurm", "latency-wait": 30}, [], [], None, 10.0, Lag([4.0, math.nan]))
    lw = [c for c in a.checks if c.area == "latency-wait"]
    assert [c.verdict for c in lw] == [FINDING] and "1 of 2" in lw[0].seen
    assert Lag([4.0, math.nan]).worst == 4.0 and Lag([math.nan]).missing == 1


def test_a_lost_sessions_jobs_are_its_until_the_resume_has_done_their_work() -> None:
    inj = injector(session_lost=["11", "12"])
    # One finished on its own, one was cancelled: the resume ran it again.
    jobs = [job("11", "part", "0"), job("12", "part", "1", "CANCELLED by 1000"), job("21", "part", "1")]
    assert judge(inj, report(jobs), "", [], GOOD, [])[0].verdict == SURVIVED
    # The resume failed for another reason: the cancelled job's work was never done again.
    out = judge(injector(session_lost=["11", "12"]), report(jobs[:2], rc=1), "", [], GOOD, [])[0]
    assert out.verdict == FAILED and "job 12 (part[1]) ended CANCELLED" in out.why


def test_a_resume_refused_stays_failed_whatever_the_run_did_after() -> None:
    inj = injector(session_lost=["11"])
    o = inj.outcomes["session-lost"]
    o.verdict, o.why, o.fix = FAILED, "the resume was refused: ...", "`rerun-incomplete: true`"
    out = judge(inj, report([job("11", "part", "0", "CANCELLED"), job("21", "part", "0")]), "", [], GOOD, [])[0]
    assert (out.verdict, out.why) == (FAILED, "the resume was refused: ...")


def test_the_run_id_is_the_last_said_and_none_while_it_is_a_lost_sessions() -> None:
    from minihpc.runner import run_id
    first, second = "0" * 8 + "-0000-0000-0000-" + "0" * 12, "1" * 8 + "-1111-1111-1111-" + "1" * 12
    said = f"SLURM run ID: {first}\n...\nSLURM run ID: {second}\n"
    assert run_id(said) == first and run_id(said, last=True) == second and run_id("none") is None
    inj = injector()
    inj.said_run_id = lambda: first
    assert inj.run_id() == first
    inj.lost_ids.append(first)
    assert inj.run_id() is None

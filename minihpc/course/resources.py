"""Core 6: resources that grow with the attempt, the lesson a real site
teaches the hard way. A rule killed for memory on attempt 1 succeeds on
attempt 2 because its mem_mb grows with `attempt`; a rule ended by its
runtime limit does the same with `runtime`. Proven from sacct: two
allocations per rule, the first FAILED (MaxRSS above the request) or TIMEOUT
(Elapsed at the limit), the second COMPLETED with the larger request. Then
the SLURM plugin's efficiency report, checked against sacct.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from minihpc.cluster import largest_step_rss, sacct_kib
from minihpc.course.cores import SLURM, fresh
from minihpc.course.labctl import Lab, Labs, Result, now_stamp
from minihpc.proofs import Proof

MEM, TIME, OVER = ("results/resources/mem_scaled.txt", "results/resources/time_scaled.txt",
                   "results/resources/over_request.txt")
FIELDS = ("JobID", "Comment", "State", "ExitCode", "ReqMem", "MaxRSS", "Timelimit", "Elapsed")
REPORTS = "reports"


def mib(size: str) -> float:
    """A sacct size (624604K, 250M, 1.2G) in MiB; 0 for none."""
    return sacct_kib(size) / 1024


def by_rule(lab: Lab, since: str) -> dict[str, list[dict[str, str]]]:
    """Each rule's allocations from this lab (its working directory: other labs
    may run the same rules meanwhile) in order, each with its steps' largest
    MaxRSS ("StepMaxRSS")."""
    rows = lab.client.sacct(since, (*FIELDS, "WorkDir"), steps=True)
    rss = largest_step_rss(rows)
    jobs = [r for r in rows if "." not in r["JobID"] and r["WorkDir"] == lab.workdir]
    for j in jobs:
        j["StepMaxRSS"] = rss.get(j["JobID"], "")
    out: dict[str, list[dict[str, str]]] = {}
    for j in sorted(jobs, key=lambda j: int(j["JobID"])):
        out.setdefault(j["Comment"].removeprefix("rule_"), []).append(j)
    return out


@dataclass
class RuleRun:
    """One Snakemake run through SLURM for one rule: the run, the rule's
    allocations in order and its SLURM logs."""

    run: Result
    jobs: list[dict[str, str]]
    log: Result


def run_rule(lab: Lab, rule: str, args: str) -> RuleRun:
    since = now_stamp(lab)
    run = lab.snakemake(f"{SLURM} {args}")
    return RuleRun(run, by_rule(lab, since).get(rule, []), lab.sh(f"cat logs/slurm/rule_{rule}/*.log"))


def sacct_of(lab: Lab, jobs: list[dict[str, str]], fields: str) -> Result:
    """sacct of these allocations and their steps (and no other lab's), for a proof."""
    return lab.sh(f"sacct -P -j {','.join(j['JobID'] for j in jobs) or '0'} -o {fields}")


def seconds(elapsed: str) -> int:
    h, m, s = (int(x) for x in elapsed.split("-")[-1].split(":"))
    return h * 3600 + m * 60 + s


def core6(labs: Labs, prefix: str = "core6") -> Proof:
    c, lab = fresh(labs, "core6", prefix)
    # The run without retries goes beside the one with, in a lab of its own.
    _, single = fresh(labs, "core6", f"{prefix}-once")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(run_rule, single, "mem_scaled", MEM)
        since = now_stamp(lab)
        retried = lab.snakemake(f"{SLURM} --retries 1 --slurm-efficiency-report "
                                f"--slurm-efficiency-report-path {REPORTS} {MEM} {TIME} {OVER}")
        once = first.result()
    jobs = by_rule(lab, since)
    report = lab.sh(f"cat {REPORTS}/efficiency_report_*.csv")
    lab.proof("core6.resources", once.run, retried, lab.sh(f"cat {MEM} {TIME}"),
              sacct_of(lab, [*once.jobs, *(j for js in jobs.values() for j in js)], ','.join(FIELDS)), report)

    c.exit("without --retries the run fails", once.run, zero=False)
    c.check("...its one allocation of mem_scaled FAILED", [j["State"] for j in once.jobs] == ["FAILED"],
            str(once.jobs))
    c.says("...and the job's log says Slurm killed it for memory", once.log, "Exceeded job memory limit")
    c.exit("with --retries 1 the run exits 0", retried)
    mem, slow = jobs.get("mem_scaled", []), jobs.get("time_scaled", [])
    c.check("mem_scaled: two allocations, FAILED then COMPLETED", [j["State"] for j in mem] == ["FAILED", "COMPLETED"],
            str(mem))
    c.check("mem_scaled: the request grew with the attempt, 400M then 800M", [j["ReqMem"] for j in mem] ==
            ["400M", "800M"], str(mem))
    c.check("mem_scaled: attempt 1's step used more than it asked for (MaxRSS above ReqMem)",
            mib(mem[0]["StepMaxRSS"]) > mib(mem[0]["ReqMem"]) if mem else False, str(mem[:1]))
    c.check("mem_scaled: attempt 2 fit its request", mib(mem[-1]["StepMaxRSS"]) < mib(mem[-1]["ReqMem"])
            if mem else False, str(mem[-1:]))
    c.check("time_scaled: two allocations, TIMEOUT then COMPLETED", [j["State"] for j in slow] ==
            ["TIMEOUT", "COMPLETED"], str(slow))
    c.check("time_scaled: the limit grew with the attempt, 1 then 3 minutes", [j["Timelimit"] for j in slow] ==
            ["00:01:00", "00:03:00"], str(slow))
    c.check("time_scaled: attempt 1 ran to its limit", seconds(slow[0]["Elapsed"]) >= 60 if slow else False,
            str(slow[:1]))
    c.check("the outputs were written by attempt 2",
            [(lab.read(t) or "").split()[:1] for t in (MEM, TIME)] == [["attempt=2"], ["attempt=2"]],
            str([lab.read(t) for t in (MEM, TIME)]))
    steps = {r["JobID"]: r["MaxRSS"] for r in lab.client.sacct(since, ("JobID", "MaxRSS"), steps=True)}
    efficiency(c, report.out, jobs.get("over_request", []), steps)
    return c


def efficiency(c: Proof, report_csv: str, over: list[dict[str, str]], steps: dict[str, str]) -> None:
    """The plugin's report on the over-requesting rule, against sacct
    (`steps`: each job step's MaxRSS by JobID)."""
    rows = [r for r in csv.DictReader(io.StringIO(report_csv)) if r.get("RuleName") == "rule_over_request"]
    c.check("the efficiency report has a row for over_request's job step", len(rows) == 1, report_csv[-600:])
    if not rows or not over:
        return
    step, used, asked = rows[0]["JobID"], float(rows[0]["MaxRSS_MB"]), float(rows[0]["RequestedMem_MB"])
    c.check("...a step of over_request's allocation", step.split(".")[0] == over[0]["JobID"], f"{step}\n{over}")
    c.check("...its requested memory is sacct's ReqMem", asked == mib(over[0]["ReqMem"]), f"{rows}\n{over}")
    # That step's, not the allocation's largest: the batch step (Snakemake
    # too) is sometimes the larger one.
    c.check("...its MaxRSS is that step's in sacct, within 1 MiB", abs(used - mib(steps.get(step, ""))) < 1,
            f"report {used} MiB, sacct {steps.get(step)} for {step}")
    c.check("...plausible: it held 20 MiB beside Snakemake, so between 20 and 300 MiB", 20 <= used <= 300,
            f"{used} MiB")
    c.check("...so its memory usage is low: under 20% of the request",
            float(rows[0]["Memory Usage (%)"]) < 20, str(rows[0]["Memory Usage (%)"]))

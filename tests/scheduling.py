"""make test's side-by-side phase (tests/run-suite.sh: xdist -n N --dist
loadscope): which group each test belongs to, and the order the groups are
handed out in (tests/conftest.py applies both)."""

from __future__ import annotations

# Side by side (tests/run-suite.sh: xdist -n N --dist loadscope), tests go to
# the workers by group: a file's tests run in one worker, in order, as their
# module fixtures expect, unless the test has a group of its own below (a
# long test, or one whose module fixture only it uses). The groups start
# costliest first (`cost` marks: a group costs its tests' sum), so that the
# longest do not start last.
# (xdist's own xdist_group marks do nothing under pytest 9.2: the id suffix
# it groups by is no longer set, so the scheduler here reads this table.)
DEFAULT_COST = 5
OWN_GROUP = {
    "tests/cluster/test_lab.py::test_resources_side_by_side": "lab-side-by-side",  # its module fixture
    "tests/cluster/test_lab.py::test_commissioning_sequence_as_printed": "lab-commissioning",
    # The file's other tests tell the check's jobs from theirs by working directory.
    "tests/cluster/test_sitecheck.py::test_the_site_check_passes_over_ssh_alone": "site-check",
    # These stage through the login node's one main prefix (/scratch/$USER/main),
    # as the site check's staged run does: in its group, they take turns with it.
    "tests/cluster/test_lab.py::test_instructor_demo[demo-unwritable-scratch]": "site-check",
    "tests/cluster/test_lab.py::test_instructor_demo[demo-prefix-mismatch]": "site-check",
    "tests/cluster/test_prove.py::test_a_staging_profile_is_proven_with_its_staging_and_without_and_a_path_it_"
    "changes_is_named": "site-check",
    "tests/cluster/test_run.py::test_a_snakefile_and_configfile_named_among_snakemakes_arguments_are_honoured":
        "run-snakefile",
    # Two Snakemake runs through SLURM: in a group of its own, the rest of its file's proofs go beside it.
    "tests/cluster/test_modules.py::test_an_envmodules_mpi_rule_runs_its_ranks_across_nodes_through_the_plugin_and_"
    "needs_the_flag": "modules-run",
    # It sets the NFS profile (its delay on its own probe files): it takes turns with the EIO proofs, which do too.
    "tests/cluster/test_sitecheck.py::test_the_lag_proof_measures_the_lag_there_is": "tests/cluster/test_shared_eio.py",
    "tests/cluster/test_nfs.py::test_deterministic_delay_hides_a_jobs_output_from_login_for_d_seconds":
        "tests/cluster/test_shared_eio.py",
    # It judges every node's scratch, where test_scratch.py writes a file: they take turns (make smoke).
    "tests/cluster/test_lab.py::test_core3_staging_as_a_learner_runs_it": "tests/cluster/test_scratch.py",
    # The longest of its file's: alone in its group, the scheduler can balance the rest around it.
    "tests/cluster/test_prove.py::test_a_rule_killed_for_memory_at_every_attempt_is_found_and_the_suggested_request_"
    "passes": "prove-memory",
}


def group_of(nodeid: str) -> str:
    """A test's own group (by its id, or its function's for every parameter), else its file's."""
    return OWN_GROUP.get(nodeid, OWN_GROUP.get(nodeid.split("[")[0], nodeid.split("::")[0]))


def start_order(cost: dict[str, float], workers: int) -> list[str]:
    """The order xdist hands the groups out in. It gives each worker two at
    the start (a worker runs a test only once it knows the next), so the
    `workers` costliest go first, then the cheapest as their followers, then
    the rest costliest first, each to whichever worker frees up first."""
    ranked = sorted(cost, key=lambda g: -cost[g])
    head, tail = ranked[:workers], ranked[workers:]
    followers = tail[::-1][:workers]
    return head + followers + [g for g in tail if g not in followers]

# The groups made above, whose tests take turns in any order (conftest.py runs their longest first).
MADE_GROUPS = frozenset(OWN_GROUP.values())

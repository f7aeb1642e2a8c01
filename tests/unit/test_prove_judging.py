"""How `minihpc prove` judges what its runs made (minihpc.prove), apart from
the cluster: the comparison, the listing read back as untrusted, and the
runs it plans."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from minihpc.audit import load_profile
from minihpc.errors import BadInput, MinihpcError
from minihpc.prove import (
    DIFFERS,
    LOCAL_PROFILE,
    LOG,
    MISSING,
    NONDETERMINISTIC,
    ONLY_POLICY,
    SAME,
    Produced,
    attribute,
    compare,
    compare_command,
    parse_snapshot,
    produced,
    prove_plan,
    same_by_command,
    sources,
    stages,
    unstaged_args,
    unstaged_profile,
)
from minihpc.runner import REMOTE_PROFILE, plan

A, B = "a" * 64, "b" * 64


def files(**kw: tuple[str, int]) -> dict[str, Produced]:
    return {k.replace("__", "/"): Produced(*v) for k, v in kw.items()}


def verdicts(findings) -> dict[str, str]:
    return {f.path: f.verdict for f in findings}


def test_the_same_bytes_are_the_same_and_other_bytes_fail_naming_the_rule() -> None:
    ref = files(results__sum=(A, 10), results__where=(A, 6))
    policy = files(results__sum=(A, 10), results__where=(B, 3))
    found = compare(ref, dict(ref), policy, {"results/where": "where"}, set())
    assert verdicts(found) == {"results/sum": SAME, "results/where": DIFFERS}
    bad = next(f for f in found if f.verdict == DIFFERS)
    assert bad.rule == "where" and "in both reference runs" in bad.why


def test_what_the_two_references_disagree_on_is_compared_by_existence_and_size() -> None:
    ref1, ref2 = files(stamp=(A, 21), grown=(A, 5)), files(stamp=(B, 21), grown=(B, 9))
    policy = files(stamp=("c" * 64, 21), grown=("c" * 64, 7))
    assert verdicts(compare(ref1, ref2, policy, {}, set())) == {"stamp": NONDETERMINISTIC, "grown": NONDETERMINISTIC}
    assert verdicts(compare(ref1, ref2, files(stamp=(A, 20), grown=(A, 1)), {}, set())) == {
        "stamp": DIFFERS, "grown": NONDETERMINISTIC}, "same size twice, another under the policy: differs"
    assert verdicts(compare(ref1, ref2, {}, {}, set())) == {"stamp": MISSING, "grown": MISSING}


def test_logs_by_existence_and_what_only_the_policy_made_is_said_not_failed() -> None:
    ref = files(logs__p=(A, 6))
    found = compare(ref, files(logs__p=(B, 6)), files(logs__p=(B, 3), logs__slurm__1=(A, 9)), {}, {"logs/p"})
    assert verdicts(found) == {"logs/p": LOG, "logs/slurm/1": ONLY_POLICY}
    assert verdicts(compare(ref, ref, {}, {}, {"logs/p"})) == {"logs/p": MISSING}


def test_what_was_synced_as_it_is_was_not_made_by_the_run(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text("rule a: ...\n")
    (tmp_path / "data.txt").write_text("input\n")
    (tmp_path / ".snakemake").mkdir()
    (tmp_path / ".snakemake/x").write_text("never synced")
    synced = sources(tmp_path, [])
    assert set(synced) == {"Snakefile", "data.txt"}
    left = {"Snakefile": Produced(synced["Snakefile"], 12),
            "data.txt": Produced(hashlib.sha256(b"changed\n").hexdigest(), 8), "out": Produced(A, 1)}
    assert set(produced(left, synced)) == {"data.txt", "out"}, "an input the run rewrote is something it made"


def test_names_are_read_as_names_whatever_they_hold() -> None:
    """A hostile workflow names files to look like find's or sha256sum's own
    output: each name is one file's, nothing else."""
    evil = "x\n" + "0" * 64 + "  ./results/sum.txt"
    listing = b"\0".join([b"f", b"3", b"results/sum.txt", b"f", b"5", evil.encode(), b"l", b"0", b"ln", b"/etc/x", b""])
    sums = f"{A}  ./results/sum.txt\0{B}  ./{evil}\0".encode()
    got = parse_snapshot(listing, sums)
    assert got == {"results/sum.txt": Produced(A, 3), evil: Produced(B, 5), "ln": Produced("link:/etc/x", 0)}
    with pytest.raises(MinihpcError, match="not find's"):
        parse_snapshot(b"f\0notanumber\0name\0", b"")


def test_the_runs_are_directories_of_their_own_from_empty(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text("rule a: ...\n")
    p = plan(str(tmp_path), None, "wf", str(tmp_path / "r"), [], [], False, ["--keep-going"])
    runs = prove_plan(p)
    assert {r: (x.name, x.fresh, x.report_dir.name) for r, x in runs.items()} == {
        "reference-1": ("wf.prove-reference-1", True, "reference-1"),
        "reference-2": ("wf.prove-reference-2", True, "reference-2"),
        "policy": ("wf.prove-policy", True, "policy"),
        "slurm": ("wf.prove-slurm", True, "slurm"),
        "faults": ("wf.prove-faults", True, "faults")}
    assert runs["reference-1"].profile == LOCAL_PROFILE and runs["policy"].profile == runs["faults"].profile \
        == p.profile
    assert all(x.snakemake_args == ["--keep-going"] for x in runs.values())
    with pytest.raises(BadInput, match="too long"):
        prove_plan(plan(str(tmp_path), None, "w" * 60, None, [], [], False, []))


def test_a_profile_in_a_directory_never_synced_travels_as_one_from_outside(tmp_path: Path) -> None:
    """prove's suggested profile lies in .minihpc/, which is never synced."""
    (tmp_path / "Snakefile").write_text("rule a: ...\n")
    (tmp_path / "profiles/slurm").mkdir(parents=True)
    (tmp_path / "profiles/slurm/config.yaml").write_text("executor: slurm\n")
    (tmp_path / ".minihpc/prove/suggested-profile").mkdir(parents=True)
    (tmp_path / ".minihpc/prove/suggested-profile/config.yaml").write_text("executor: slurm\nretries: 2\n")
    assert plan(str(tmp_path), None, None, None, [], [], False, []).profile_remote == "profiles/slurm"
    p = plan(str(tmp_path), ".minihpc/prove/suggested-profile", None, None, [], [], False, [])
    assert p.profile_remote == REMOTE_PROFILE and p.profile == tmp_path / ".minihpc/prove/suggested-profile"
    assert plan(str(tmp_path), "profiles/slurm", None, None, [], ["profiles"], False, []).profile_remote == \
        REMOTE_PROFILE, "nor one --exclude leaves behind"


def test_with_compare_a_nondeterministic_file_is_judged_by_the_users_command() -> None:
    """--compare judges what the references disagree on (both the reference and
    the policy run made it); the rest is judged as without it."""
    ref1 = files(stamp=(A, 10), seed=(A, 10), same=(A, 3), link=("link:x", 1), gone=(A, 10), once=(A, 4))
    ref2 = files(stamp=(B, 10), seed=(B, 10), same=(A, 3), link=("link:y", 1), gone=(B, 10))
    policy = files(stamp=(B, 10), seed=("c" * 64, 10), same=(A, 3), link=("link:z", 1), once=(B, 4))
    asked: list[str] = []

    def judge(path: str) -> tuple[bool, str]:
        asked.append(path)
        return path == "stamp", "exited 0" if path == "stamp" else "exited 1: seeds differ"
    found = compare(ref1, ref2, policy, {}, set(), judge)
    assert verdicts(found) == {"stamp": NONDETERMINISTIC, "seed": DIFFERS, "same": SAME, "link": NONDETERMINISTIC,
                               "gone": MISSING, "once": DIFFERS}
    assert sorted(asked) == ["once", "seed", "stamp"], \
        "a file one reference lacks is the command's too; a symlink or a file the policy run lacks is not"
    assert "compared by --compare: exited 1: seeds differ" in next(f.why for f in found if f.path == "seed")


@pytest.mark.parametrize(("given", "said"), [("", "--compare is empty"),
                                             ("cmp 'unclosed", "cannot be split into words")])
def test_a_compare_command_that_is_not_one_is_refused_before_anything_runs(given: str, said: str) -> None:
    with pytest.raises(BadInput, match=said):
        compare_command(given)


def test_a_compare_command_is_words_never_shell() -> None:
    assert compare_command("python3 'my script.py' $(rm -rf ~)") == ["python3", "my script.py", "$(rm", "-rf", "~)"]
    assert compare_command(None) is None


class Files:
    """A cluster whose files are these bytes (what `fetched` reads through `pipe`)."""

    def __init__(self, **content: bytes) -> None:
        self.content = content

    def pipe(self, script: str, timeout: float = 900) -> tuple[int, bytes, str]:
        path = script.split(" -- ")[-1].strip("'")
        size = int(script.split("head -c ")[1].split()[0])
        return (0, self.content[path][:size], "") if path in self.content else (1, b"", f"{path}: no such file")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_compare_command_runs_here_on_the_bytes_the_snapshots_saw(tmp_path: Path) -> None:
    (tmp_path / "same.py").write_text("import sys\n"
                                      "sys.exit(open(sys.argv[1]).read()[:4] != open(sys.argv[2]).read()[:4])")
    words = ["python3", "same.py"]
    ref, pol = b"2026 first\n", b"2026 second\n"
    cluster = Files(r=ref, p=pol)
    assert same_by_command(cluster, words, tmp_path, ("r", len(ref), digest(ref)), ("p", len(pol), digest(pol))) \
        == (True, "python3 same.py exited 0")
    ok, said = same_by_command(Files(r=ref, p=b"1999 other\n"), words, tmp_path, ("r", len(ref), digest(ref)),
                               ("p", len(b"1999 other\n"), digest(b"1999 other\n")))
    assert not ok and said == "python3 same.py exited 1", said
    # Rewritten after its snapshot (a process the workflow left behind): a difference, the command never asked.
    ok, said = same_by_command(Files(r=b"2026 forged\n", p=pol), ["false"], tmp_path,
                               ("r", len(ref), digest(ref)), ("p", len(pol), digest(pol)))
    assert not ok and said == "r changed after its run's checksums were taken", said
    ok, said = same_by_command(Files(p=pol), words, tmp_path, ("r", 3, digest(ref)), ("p", len(pol), digest(pol)))
    assert not ok and said.startswith("could not read r"), said


def test_a_compare_command_not_on_this_machine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no command 'no-such-compare' on this machine"):
        compare_command("no-such-compare a b", tmp_path)
    (tmp_path / "cmp.sh").write_text("#!/bin/sh\ncmp -s \"$1\" \"$2\"\n")
    (tmp_path / "cmp.sh").chmod(0o755)
    assert compare_command("./cmp.sh", tmp_path) == ["./cmp.sh"]


STAGING_PROFILE = """executor: slurm
retries: 2
default-storage-provider: fs
shared-fs-usage: [persistence, software-deployment, sources, source-cache]
local_storage_prefix: /scratch/$USER/main
remote-job-local-storage-prefix: /scratch/$USER/job-$SLURM_JOB_ID
storage-fs-latency-wait: 3
default-resources: {mem_mb: 1000}
"""


def test_a_staging_profile_is_proven_twice_with_its_storage_and_without(tmp_path: Path) -> None:
    """The `slurm` run's profile: the user's with every storage setting left
    out (dashes or underscores, the plugins' own storage-NAME-* too), the
    rest as it was, and the profile's other files beside it."""
    prof = tmp_path / "profile"
    prof.mkdir()
    (prof / "config.v8+.yaml").write_text(STAGING_PROFILE)
    (prof / "status.sh").write_text("echo\n")
    conf = load_profile(prof)
    assert stages(conf, []) and not stages({"executor": "slurm"}, [])
    assert stages({}, ["--default-storage-provider=fs"]) and stages({}, ["-j", "2", "--default-storage-provider", "fs"])
    out = unstaged_profile(prof, conf, tmp_path / "unstaged")
    assert sorted(x.name for x in out.iterdir()) == ["config.yaml", "status.sh"]
    assert load_profile(out) == {"executor": "slurm", "retries": 2, "default-resources": {"mem_mb": 1000}}
    assert load_profile(prof) == conf, "the user's profile is left as it was"


def test_the_storage_flags_leave_snakemakes_arguments_with_their_values() -> None:
    args = ["--default-storage-provider", "fs", "--shared-fs-usage", "persistence", "sources", "--keep-going",
            "--local-storage-prefix=/scratch/x", "--storage-fs-latency-wait", "3", "--config", "a=1", "all"]
    assert unstaged_args(args) == ["--keep-going", "--config", "a=1", "all"]
    assert unstaged_args(["-j", "2", "target"]) == ["-j", "2", "target"]


def test_a_difference_is_put_down_to_staging_only_when_the_run_without_it_kept_the_file() -> None:
    ref = files(out__a=(A, 1), out__b=(A, 1), out__c=(A, 1))
    staged = compare(ref, ref, files(out__a=(B, 1), out__b=(B, 1), out__c=(A, 1)), {}, set())
    plain = compare(ref, ref, files(out__a=(A, 1), out__b=(B, 1), out__c=(A, 1)), {}, set())
    both = attribute(staged, plain)
    by = {(f.run, f.path): f for f in both}
    assert {k: f.verdict for k, f in by.items()} == {
        ("policy", "out/a"): DIFFERS, ("policy", "out/b"): DIFFERS, ("policy", "out/c"): SAME,
        ("slurm", "out/a"): SAME, ("slurm", "out/b"): DIFFERS, ("slurm", "out/c"): SAME}
    assert by[("policy", "out/a")].why.endswith("staging changes it")
    assert by[("policy", "out/b")].why.endswith("not staging's doing")


def test_the_files_a_refused_resume_names_are_read_from_snakemakes_words() -> None:
    from minihpc.prove import incomplete_files
    said = ("Building DAG of jobs...\nIncompleteFilesException:\nThe files below seem to be incomplete. If you are "
            "sure ...\n\n    snakemake --cleanup-metadata <filenames>\n\nTo re-generate the files rerun your command "
            "with the --rerun-incomplete flag.\nIncomplete files:\nresults/parts/0.txt\nresults/parts/1.txt\n\n"
            "  Command: snakemake ...\n")
    assert incomplete_files(said) == ["results/parts/0.txt", "results/parts/1.txt"]
    assert incomplete_files("Incomplete files:\nx\n") is None, "no exception: nothing refused"
    assert incomplete_files("IncompleteFilesException:\n") == []
    # The workflow's own output may say anything before it: a long run of lines costs one pass.
    assert incomplete_files("IncompleteFilesException:\n" * 20000 + "Incomplete files:\na\n") == ["a"]


def test_under_faults_only_a_file_made_and_different_is_a_faults_changed_output() -> None:
    from minihpc.prove import DIFFERS, MISSING, Finding, changed
    found = [Finding("results/parts/3.txt", "part", MISSING, "the EIO's job never ran again"),
             Finding("results/sum.txt", "total", MISSING, ""), Finding("results/x.txt", "x", DIFFERS, "")]
    assert changed(found) == [("results/x.txt", "x")]

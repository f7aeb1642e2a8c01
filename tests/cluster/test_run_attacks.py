"""`minihpc run` against another user of the cluster and against what comes
back from it: alice plants a run directory (a 777 directory with a
`snakemake/` package, or a symlink to hers) and the run is refused before
anything is synced; alice's job comment holds `|` and a newline and sacct's
rows, the timeline and the report still read; --fetch brings back only the
plain files its patterns match and never writes through a host symlink.
Cheap: no Snakemake run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cli, eventually, q

from minihpc import timeline
from minihpc.cluster import ROOT_USER, UnsafeDir
from minihpc.cluster import Cluster as Client
from minihpc.runner import _fetch, plan

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "tests/workflows/byow"
PLANTED = "raise SystemExit('planted by alice')\n"



@pytest.fixture
def wf(tmp_path: Path) -> Path:
    w = tmp_path / "byow"
    shutil.copytree(WORKFLOW, w)
    return w


@pytest.fixture
def planted(client: Client, request: pytest.FixtureRequest) -> Iterator[str]:
    """/shared/NAME made first by alice, as the test's parameter says; what lies there, listed as root."""
    f = client.facts
    name, how = "test-attack-planted", request.param
    dest, hers = f"{f.shared}/{name}", f"{f.shared}/test-attack-alices"
    make = {"a 777 directory": f"mkdir {dest} && chmod 777 {dest} && cd {dest}",
            "a symlink to hers": f"mkdir {hers} && chmod 777 {hers} && ln -s {hers} {dest} && cd {hers}"}[how]
    r = client.sh(f"rm -rf {dest} {hers} && {make} && mkdir -m 777 snakemake && "
                  f"printf %s {q(PLANTED)} > snakemake/__init__.py && chmod 666 snakemake/__init__.py",
                  user=f.other_user, workdir="/tmp")
    assert r.rc == 0, r.out
    yield dest
    client.sh(f"rm -rf {dest} {hers}", user=f.other_user, workdir="/tmp")


def listing(client: Client, dest: str) -> str:
    return client.root(f"ls -ld --time-style=+ {dest}; find -L {dest} -printf '%P %u %m %s\\n' | sort").out


@pytest.mark.parametrize("planted", ["a 777 directory", "a symlink to hers"], indirect=True)
def test_a_run_directory_alice_planted_is_refused_before_anything_is_synced(client: Client, planted: str,
                                                                           wf: Path) -> None:
    f = client.facts
    before = listing(client, planted)
    r = cli("run", str(wf), "--name", planted.rsplit("/", 1)[1], "--fresh")
    why = ("is a symbolic link" if "symbolic link" in client.root(f"stat -c %F {planted}").out
           else f"belongs to {f.other_user} (uid {f.other_uid}), not to {f.lab_user}")
    assert r.returncode == 1, (r.returncode, r.stdout[-2000:], r.stderr)
    assert f"minihpc: error: refusing {planted}: {planted} {why}; it must be a directory of {f.lab_user}'s " \
           "that no one else can write to: have its owner remove it (yours: chmod go-w it), or run under another " \
           "name: --name NAME" in r.stderr, r.stderr
    # Nothing of the workflow landed, alice's files are as she left them (--fresh removed nothing), and
    # Snakemake never ran (a run that does writes its report).
    assert listing(client, planted) == before
    assert client.sh(f"cat {planted}/snakemake/__init__.py").out == PLANTED
    assert not (wf / ".minihpc").exists()


@pytest.mark.parametrize("planted", ["a 777 directory"], indirect=True)
def test_put_checks_again_as_it_writes(client: Client, planted: str, wf: Path) -> None:
    """The run's early check and its sync are two commands: a directory alice
    makes in between is refused by the sync itself."""
    before = listing(client, planted)
    with pytest.raises(UnsafeDir) as e:
        client.put(planted, [(wf, ".", None)], fresh=True)
    assert e.value.where == "dir" and f"{planted} belongs to {client.facts.other_user}" in e.value.what
    assert listing(client, planted) == before


def test_a_bar_or_a_newline_in_alices_job_comment_breaks_no_parse(client: Client, tmp_path: Path) -> None:
    f = client.facts
    since = client.now()
    forged = "x\n999999|forged|rule_fake|student|wrap|1|c1|2026-01-01T00:00:00"

    def submit(user: str, comment: str, wrap: str = "true") -> str:
        r = client.sh(f"sbatch --parsable -o /dev/null --comment {q(comment)} --wrap {q(wrap)}", user=user,
                      workdir="/tmp")
        assert r.rc == 0, r.out
        return r.out.strip().splitlines()[-1]

    # The lab user's job first and longest: --all-users draws others' jobs within its span.
    mine = submit(f.lab_user, "mine", "sleep 5")
    bar, newline = submit(f.other_user, "a|b|c"), submit(f.other_user, forged)
    fields = ("JobID", "User", "Comment", "State")

    def ended() -> dict[str, dict[str, str]] | None:
        rows = {r["JobID"]: r for r in client.sacct(since, fields, all_users=True, user=ROOT_USER)}
        done = all(rows.get(j, {}).get("State") == "COMPLETED" for j in (bar, newline, mine))
        return rows if done else None
    rows = eventually(ended, timeout=300, interval=2, what="the three jobs to complete")
    assert rows[bar] == {"JobID": bar, "User": f.other_user, "Comment": "a|b|c", "State": "COMPLETED"}
    assert rows[newline]["Comment"] == forged and "999999" not in rows, "the comment is intact and forged no row"
    # The timeline of the window, everyone's jobs: alice's drawn as hers.
    bars, _ = timeline.select(client, since=since, all_users=True)
    assert {b.job_id: b.rule for b in bars if b.job_id in (bar, newline)} == \
        {bar: f"{f.other_user}'s jobs", newline: f"{f.other_user}'s jobs"}
    r = cli("timeline", "--since", since, "--all-users", "-o", str(tmp_path / "tl"))
    assert r.returncode == 0, r.stderr
    svg = (tmp_path / "tl.svg").read_text()
    assert f">{f.other_user}'s jobs<" in svg and "999999" not in svg


def test_fetch_brings_back_only_plain_matching_files_and_never_writes_through_a_host_symlink(
        client: Client, wf: Path, tmp_path: Path) -> None:
    fetch = ["results/*.txt", "out/*.csv", "./logs/**", ".git/**"]
    p = plan(str(wf), None, "test-attack-fetch", None, fetch, [], True, [])
    remote = p.remote(client.facts.shared)
    victim = tmp_path / "victim"
    victim.mkdir()
    (wf / "out").symlink_to(victim)
    r = client.sh(f"rm -rf {remote} && mkdir -p {remote} && cd {remote} && mkdir -p results/sub out logs/a .git/hooks "
                  "&& echo A > results/a.txt && echo B > results/sub/b.txt && echo C > out/c.csv && "
                  "echo L > logs/a/x.log && ln -s /etc/passwd results/passwd.txt && ln -s .. logs/up && "
                  "echo hook > .git/hooks/post-checkout && printf n > \"$(printf 'results/new\\nline.txt')\"")
    assert r.rc == 0, r.out
    try:
        got, refused = _fetch(p, client, remote)
    finally:
        client.sh(f"rm -rf {remote}")
    assert got == ["logs/a/x.log", "results/a.txt"]
    assert sorted(refused) == [".git/hooks/post-checkout: inside a control directory (.git, .hg, .minihpc, "
                               ".snakemake, .svn)",
                               "out/c.csv: out on the host is a symbolic link, which is never followed",
                               "results/new\\x0aline.txt: a name with a backslash, control characters or bytes "
                               "that are not UTF-8"]
    assert list(victim.iterdir()) == [] and not (wf / ".git").exists()
    assert (wf / "results/a.txt").read_text() == "A\n" and not (wf / "results/passwd.txt").exists()

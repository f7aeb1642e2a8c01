"""What `minihpc run --fetch` writes on the host from a tar stream the cluster
sends back (untrusted: the workflow made the files, the run directory and
what the login node prints): only regular files the patterns match, only
beneath the workflow directory, never through a link, never into a control
directory; the rest refused and reported. Hand-made streams, no cluster."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from minihpc.errors import MinihpcError
from minihpc.runner import Plan, _fetch, matches, say_refused, unpack_outputs, write_report
from minihpc.runner import Report as RunReport

PATTERNS = ["results/*.txt", "out/**/*.csv"]


def member(name: str, data: bytes = b"x\n", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    return name, data, kind, link


def stream(*members: tuple, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    w = tmp_path / "wf"
    w.mkdir()
    (w / "Snakefile").write_text("rule all:\n")
    return w


def refused(lines: list[str]) -> dict[str, str]:
    return dict(x.split(": ", 1) for x in lines)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_matching_regular_files_are_written(wf: Path) -> None:
    got, bad = unpack_outputs(stream(member("results/a.txt", b"A\n"), member("out/x/y/z.csv", b"1,2\n")), wf,
                              PATTERNS)
    assert (got, bad) == (["out/x/y/z.csv", "results/a.txt"], [])
    assert (wf / "results/a.txt").read_bytes() == b"A\n" and (wf / "out/x/y/z.csv").read_bytes() == b"1,2\n"
    assert not [p for p in wf.rglob(".minihpc-fetch-*")], "no temporary file is left"


def test_a_symlink_in_the_host_workflow_is_never_written_through(wf: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (wf / "results").symlink_to(victim)
    got, bad = unpack_outputs(stream(member("results/a.txt", b"planted\n")), wf, PATTERNS)
    assert got == [] and "is a symbolic link, which is never followed" in refused(bad)["results/a.txt"]
    assert list(victim.iterdir()) == []


def test_a_symlinked_file_is_replaced_not_written_through(wf: Path, tmp_path: Path) -> None:
    """The file itself a link (to ~/.bashrc, say): refused, the target unchanged."""
    target = tmp_path / "bashrc"
    target.write_text("mine\n")
    (wf / "results").mkdir()
    (wf / "results/a.txt").symlink_to(target)
    got, bad = unpack_outputs(stream(member("results/a.txt", b"planted\n")), wf, PATTERNS)
    assert got == [] and "symbolic link" in refused(bad)["results/a.txt"]
    assert target.read_text() == "mine\n" and (wf / "results/a.txt").is_symlink()


def test_a_hard_link_on_the_host_is_not_written_through(wf: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    (wf / "results").mkdir()
    os.link(outside, wf / "results/a.txt")
    got, _ = unpack_outputs(stream(member("results/a.txt", b"new\n")), wf, PATTERNS)
    assert got == ["results/a.txt"] and (wf / "results/a.txt").read_text() == "new\n"
    assert outside.read_text() == "keep\n", "the file was replaced by a new one, not written through the link"


@pytest.mark.parametrize(("name", "kind", "link", "why"), [
    ("results/other.log", tarfile.REGTYPE, "", "matches no --fetch pattern"),
    ("Snakefile", tarfile.REGTYPE, "", "matches no --fetch pattern"),
    (".git/hooks/post-checkout", tarfile.REGTYPE, "", "inside a control directory"),
    ("results/.GIT/x.txt", tarfile.REGTYPE, "", "inside a control directory"),
    (".minihpc/report.md", tarfile.REGTYPE, "", "inside a control directory"),
    (".git", tarfile.REGTYPE, "", "inside a control directory"),  # a gitfile: "gitdir: /elsewhere"
    ("../x", tarfile.REGTYPE, "", "reaches outside the workflow (..)"),
    ("results/../../x.txt", tarfile.REGTYPE, "", "reaches outside the workflow (..)"),
    ("/tmp/abs.txt", tarfile.REGTYPE, "", "an absolute path"),
    ("results\\a.txt", tarfile.REGTYPE, "", "a name with a backslash"),
    ("results/a\nb.txt", tarfile.REGTYPE, "", "control characters"),
    ("results//a.txt", tarfile.REGTYPE, "", "not a plain relative path"),
    ("results/link.txt", tarfile.SYMTYPE, "/etc/passwd", "a symbolic link, not a regular file"),
    ("results/hard.txt", tarfile.LNKTYPE, "results/a.txt", "a hard link, not a regular file"),
    ("results/dev.txt", tarfile.CHRTYPE, "", "a device, FIFO or other special file"),
    ("results/fifo.txt", tarfile.FIFOTYPE, "", "a device, FIFO or other special file"),
    ("results/d.txt", tarfile.DIRTYPE, "", "a directory, not a regular file"),
])
def test_members_that_are_not_plain_matching_files_are_refused(wf: Path, tmp_path: Path, name: str, kind: bytes,
                                                                link: str, why: str) -> None:
    before = files_under(tmp_path)
    # Patterns that match anything, but where the point is the patterns themselves.
    pats = PATTERNS if why.startswith("matches no") else [*PATTERNS, "**", "results/*", ".*/**", "*/.*/*"]
    got, bad = unpack_outputs(stream(member(name, b"evil\n", kind, link)), wf, pats)
    assert got == [] and len(bad) == 1 and why in bad[0], bad
    assert files_under(tmp_path) == before, "nothing was written anywhere"


def test_a_file_where_a_directory_is_expected_is_refused(wf: Path) -> None:
    (wf / "out").write_text("a file\n")
    got, bad = unpack_outputs(stream(member("out/x/y.csv"), member("results/a.txt")), wf, PATTERNS)
    assert got == ["results/a.txt"]
    assert refused(bad) == {"out/x/y.csv": "out on the host is a file where a directory is expected"}
    assert (wf / "out").read_text() == "a file\n"


def test_a_directory_where_the_file_goes_is_refused(wf: Path) -> None:
    (wf / "results/a.txt").mkdir(parents=True)
    _, bad = unpack_outputs(stream(member("results/a.txt")), wf, PATTERNS)
    assert refused(bad) == {"results/a.txt": "results/a.txt on the host is a directory"}


def test_the_report_lists_what_was_refused_and_why(wf: Path) -> None:
    got, bad = unpack_outputs(stream(member("results/a.txt"), member(".git/hooks/post-checkout"),
                                     member("results/l.txt", kind=tarfile.SYMTYPE, link="/etc")), wf, PATTERNS)
    r = RunReport(str(wf), "/shared/wf", "p", "s", "snakemake", 0, 1.0, None, fetched=got, fetch_refused=bad)
    write_report(wf / ".minihpc", r)
    md = (wf / ".minihpc/report.md").read_text()
    assert "Not fetched (refused):\n- .git/hooks/post-checkout: inside a control directory" in md
    assert "- results/l.txt: a symbolic link, not a regular file" in md
    assert not (wf / ".git").exists()


def test_the_cli_says_what_was_refused_on_stderr(wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, bad = unpack_outputs(stream(*(member(f".git/hooks/h{i}") for i in range(3)),
                                   member("results/\x1b]0;pwned\x07.txt")), wf, PATTERNS)
    say_refused(bad, at_most=3)
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [
        "minihpc: not fetched: .git/hooks/h0: inside a control directory (.git, .hg, .minihpc, .snakemake, .svn)",
        "minihpc: not fetched: .git/hooks/h1: inside a control directory (.git, .hg, .minihpc, .snakemake, .svn)",
        "minihpc: not fetched: .git/hooks/h2: inside a control directory (.git, .hg, .minihpc, .snakemake, .svn)",
        "minihpc: not fetched: 1 more (report.json, fetch_refused)"]
    assert "\x1b" not in bad[3] and bad[3].startswith("results/\\x1b]0;pwned\\x07.txt: a name with"), bad[3]


def test_too_many_bytes_or_members_is_an_error_before_anything_is_written(wf: Path) -> None:
    data = stream(member("results/a.txt", b"x" * 5000), member("results/b.txt"))
    with pytest.raises(MinihpcError, match="the cluster sent more than 4096 bytes, nothing was written"):
        unpack_outputs(data, wf, PATTERNS, max_bytes=4096)
    many = stream(*(member(f"results/{i}.txt") for i in range(6)))
    with pytest.raises(MinihpcError, match="the cluster sent more than 5 files, nothing was written"):
        unpack_outputs(many, wf, PATTERNS, max_files=5)
    assert not (wf / "results").exists()


def test_a_member_claiming_more_than_the_stream_holds_is_refused(wf: Path) -> None:
    """A PAX header can claim any size: the sum of the claims is bounded, and
    a member that runs past the end of what came back is an error."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("results/big.txt")
        info.size = 10 * 2**30
        tar.addfile(info)  # a header only: its data never follows
    with pytest.raises(MinihpcError, match="more than"):
        unpack_outputs(buf.getvalue()[:4096], wf, PATTERNS)
    with pytest.raises(MinihpcError, match="ends inside results/big.txt"):
        unpack_outputs(buf.getvalue()[:4096], wf, PATTERNS, max_bytes=2**40)
    assert not (wf / "results").exists()


def test_what_is_not_a_tar_stream_is_an_error(wf: Path) -> None:
    with pytest.raises(MinihpcError, match="not a tar stream"):
        unpack_outputs(b"\x1b[2J" + b"hello from .bashrc\n" * 40, wf, PATTERNS)
    import gzip
    with pytest.raises(MinihpcError, match="not a tar stream"):  # compressed (a bomb, perhaps): never opened
        unpack_outputs(gzip.compress(stream(member("results/a.txt"))), wf, PATTERNS)


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("results/*.txt", "results/a.txt", True),
    ("results/*.txt", "results/sub/a.txt", False),  # * stays in one directory, as in bash
    ("results/*.txt", "results/.hidden.txt", False),  # no dotglob
    ("results/.*.txt", "results/.hidden.txt", True),
    ("results/**/*.txt", "results/a.txt", True),
    ("results/**/*.txt", "results/x/y/a.txt", True),
    ("results/**/*.txt", "results/.x/a.txt", False),
    ("results/**", "results/x/y/a.txt", True),
    ("**", ".git/config", False),
    ("results/a?.t[xy]t", "results/ab.txt", True),
    ("results/[!a]*.txt", "results/a.txt", False),
    ("results/a.txt", "results/a.txt", True),
])
def test_patterns_match_as_bash_expands_them(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


class FakeCluster:
    """What _fetch asks of the cluster: one pipe() call, answered with a stream."""

    def __init__(self, data: bytes, rc: int = 0, err: str = "") -> None:
        self.data, self.rc, self.err, self.scripts = data, rc, err, []

    def pipe(self, script: str) -> tuple[int, bytes, str]:
        self.scripts.append(script)
        return self.rc, self.data, self.err


def plan_for(wf: Path, fetch: list[str]) -> Plan:
    return Plan(wf, "wf", wf, ".", [], wf / ".minihpc", fetch, [], False)


def test_fetch_asks_for_the_patterns_and_writes_what_matches(wf: Path) -> None:
    c = FakeCluster(stream(member("results/a.txt", b"A\n"), member("results/a.txt", b"A\n"),
                           member(".snakemake/log/x.txt")))
    got, bad = _fetch(plan_for(wf, ["results/*.txt", "results/a.txt"]), c, "/shared/wf")  # type: ignore[arg-type]
    assert got == ["results/a.txt"], "a file two patterns match is written once"
    assert refused(bad) == {".snakemake/log/x.txt": "inside a control directory (.git, .hg, .minihpc, .snakemake, "
                                                     ".svn)"}
    script = c.scripts[0]
    assert "cd /shared/wf" in script and "'results/*.txt' results/a.txt" in script and "[ ! -L" in script
    assert "head -c 536870913" in script, "at most one byte over the limit is read back"


def test_fetch_refuses_a_stream_over_the_limit_however_it_came(wf: Path) -> None:
    c = FakeCluster(b"\0" * (512 * 2**20 + 1), rc=141)
    with pytest.raises(MinihpcError, match="nothing was written"):
        _fetch(plan_for(wf, ["results/*.txt"]), c, "/shared/wf")  # type: ignore[arg-type]


def test_fetch_says_why_the_cluster_failed(wf: Path) -> None:
    c = FakeCluster(b"", rc=2, err="tar: results/a.txt: Cannot open: Permission denied\x1b[31m\n")
    with pytest.raises(MinihpcError, match=r"Permission denied\\x1b\[31m; check the patterns"):
        _fetch(plan_for(wf, ["results/*.txt"]), c, "/shared/wf")  # type: ignore[arg-type]

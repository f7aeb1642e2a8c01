"""A requirements file comes from someone else's workflow: nothing in it may
make the host's pip build code on the host, read a host file, fetch a URL
or change how pip behaves (minihpc.pyenv). Each attack is refused before
anything is touched, naming the file, the line, what was written and the
fix; what a site's environment needs is still accepted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from minihpc import pyenv
from minihpc.cluster import Result
from minihpc.errors import BadInput, MinihpcError
from minihpc.pyenv import Base, Requirements, requirements
from minihpc.runner import plan

BASE = Base("3.13.5", "/opt/minihpc/venv", "cp313", "/opt/minihpc/venv/lib/python3.13/site-packages",
            "lib/python3.13/site-packages", ["manylinux_2_41_x86_64"], ["snakemake==9.27.1"])
HOST_SECRET = "root:x:0:0:root:/root:/bin/bash"  # what a host file holds: it must never reach a message
WHEEL = "publish it as a wheel on your index and list it by name"
PIP_CONFIG = "the host's pip takes its index, proxy and CA from the host's own pip config"
INSIDE = "keep included files inside the workflow directory"


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf/Snakefile").write_text("rule all:\n    output: 'x'\n    shell: 'touch {output}'\n")
    (tmp_path / "outside.txt").write_text(HOST_SECRET + "\n")
    return tmp_path / "wf"


def refused(wf: Path, files: list[str] | None = None, pip: list[str] | None = None) -> BadInput:
    with pytest.raises(BadInput) as e:
        requirements(wf, files or [], pip or [], False)
    assert e.value.fix, "every refusal says how to fix it"
    assert HOST_SECRET not in str(e.value), "no host file's content in the message"
    return e.value


@pytest.mark.parametrize(("attack", "fix"), [
    ("pkg @ file:///etc", WHEEL),
    ("pkg @ https://x.example/y.tar.gz", WHEEL),
    ("./localdir", WHEEL),
    ("/abs/path", WHEEL),
    ("git+https://github.com/x/y.git#egg=y", WHEEL),
    ("evil.tar.gz", WHEEL),  # pip reads a name with an archive's ending as a file on the host's disk
    ("--no-binary :all:", PIP_CONFIG),
    ("--index-url http://x.example/simple", PIP_CONFIG),
    ("--extra-index-url http://x.example/simple", PIP_CONFIG),
    ("-f /tmp", PIP_CONFIG),
    ("--find-links=/tmp", PIP_CONFIG),
    ("--trusted-host x.example", PIP_CONFIG),
    ("--hash=sha256:" + "0" * 64, PIP_CONFIG),
    ("--pre", "pin the pre-release you want"),
    ("-e .", "build a wheel and publish it to your index"),
    ("numpy --hash=sha256:" + "0" * 64, "remove it"),  # an option pip reads off a requirement line
    ("numpy\t--index-url=http://x.example", "remove it"),  # a tab instead of a space
    ("   --index-url http://x.example", PIP_CONFIG),  # leading whitespace
    ('tomli; python_version < "3 --index-url=http://x.example"', "remove it"),  # inside a marker's quotes
    ("numpy==${HOME}", "version specifiers"),  # pip fills ${VAR} from the host's environment
])
def test_an_attack_in_a_requirements_file_is_refused_with_file_line_and_fix(wf: Path, attack: str, fix: str) -> None:
    (wf / "requirements.txt").write_text(f"# what the jobs need\nujson>=5\n{attack}\n")
    e = refused(wf)
    assert e.what.startswith("requirements.txt:3: "), e.what
    assert repr(attack.strip()) in e.what and fix in e.fix, e


def test_an_option_joined_onto_a_name_by_a_continuation_is_refused_at_its_first_line(wf: Path) -> None:
    (wf / "requirements.txt").write_text("ujson\nnumpy \\\n--index-url http://x.example/simple\n")
    e = refused(wf)
    assert e.what.startswith("requirements.txt:2: 'numpy --index-url http://x.example/simple' carries the pip "
                             "option '--index-url'"), e.what


@pytest.mark.parametrize("include", ["-r /etc/passwd", "-c /etc/passwd", "-r ../outside.txt",
                                     "--requirement=../outside.txt", "--constraint ../../etc/passwd"])
def test_an_include_outside_the_workflow_is_refused(wf: Path, include: str) -> None:
    (wf / "requirements.txt").write_text(f"ujson\n{include}\n")
    e = refused(wf)
    assert e.what.startswith(f"requirements.txt:2: {include!r} resolves to ") and \
        f"outside the workflow directory {wf}" in e.what and INSIDE in e.fix, e.what


def test_an_include_through_a_link_leading_outside_is_refused(wf: Path) -> None:
    (wf / "link").symlink_to(wf.parent / "outside.txt")
    (wf / "sub").symlink_to(wf.parent)  # a directory link: sub/outside.txt is outside too
    for n, include in enumerate(("-r link", "-r sub/outside.txt"), 1):
        (wf / "requirements.txt").write_text(f"ujson\n{include}\n")
        e = refused(wf)
        assert e.what.startswith(f"requirements.txt:2: {include!r} resolves to {wf.parent / 'outside.txt'}"), (n, e)


def test_a_requirements_txt_that_is_a_link_outside_is_not_read(wf: Path) -> None:
    (wf / "requirements.txt").symlink_to(wf.parent / "outside.txt")
    e = refused(wf)
    assert e.what == f"requirements.txt resolves to {wf.parent / 'outside.txt'}, outside the workflow directory {wf}"
    (wf / "reqs.txt").symlink_to(wf.parent / "outside.txt")
    e = refused(wf, files=[str(wf / "reqs.txt")])
    assert "resolves to" in e.what and "outside the workflow directory" in e.what, "named on the command line too"


@pytest.mark.parametrize("include", ["-r https://x.example/r.txt", "-r ${HOME}/r.txt", "-r '/etc/passwd'"])
def test_an_include_that_is_not_a_plain_path_is_refused(wf: Path, include: str) -> None:
    (wf / "requirements.txt").write_text(f"{include}\n")
    e = refused(wf)
    assert e.what.startswith(f"requirements.txt:1: {include!r} includes ") and "not a plain path" in e.what


def test_an_attack_in_an_included_file_names_that_file(wf: Path) -> None:
    (wf / "envs").mkdir()
    (wf / "envs/more.txt").write_text("tabulate\n\n--index-url http://x.example\n")
    (wf / "requirements.txt").write_text("ujson\n-r envs/more.txt\n")
    assert refused(wf).what.startswith("envs/more.txt:3: '--index-url http://x.example' is a pip option")


def test_a_file_given_from_elsewhere_may_include_only_beside_or_below_itself(wf: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "parts").mkdir(parents=True)
    (mine / "parts/base.txt").write_text("ujson\n")
    (mine / "reqs.txt").write_text("-r parts/base.txt\ntabulate\n")
    r = requirements(wf, [str(mine / "reqs.txt")], [], False)
    assert r is not None and r.lines == ("ujson", "tabulate")
    (mine / "reqs.txt").write_text("tabulate\n-r ../outside.txt\n")
    e = refused(wf, files=[str(mine / "reqs.txt")])
    assert e.what.startswith(f"{mine / 'reqs.txt'}:2: '-r ../outside.txt' resolves to") and f"outside {mine}" in e.what


@pytest.mark.parametrize("pkg", ["pkg @ file:///etc", "--index-url=http://x.example", "./localdir", "numpy --pre"])
def test_pip_values_get_the_same_check(wf: Path, pkg: str) -> None:
    e = refused(wf, pip=[pkg])
    assert e.what.startswith(f"--pip: {pkg!r} "), e.what


@pytest.mark.parametrize("line", ["numpy>=1.26,<3", "requests[socks]==2.*", 'tomli; python_version < "3.11"',
                                  "humanize (>=4.0, !=4.1.0)", "Pillow~=10.4", "torch==2.5.1+cpu",
                                  'pywin32; sys_platform == "win32" and (python_version >= "3.8" or extra == "x")',
                                  'uvloop; platform_machine not in "armv7l i686"', "pkg===1.0-custom", "a.b_c-D"])
def test_what_a_site_needs_is_accepted_as_written(wf: Path, line: str) -> None:
    (wf / "requirements.txt").write_text(f"{line}\n")
    r = requirements(wf, [], [], False)
    assert r is not None and r.lines == (line,)


def test_comments_blank_lines_continuations_and_includes_inside_are_accepted(wf: Path) -> None:
    (wf / "envs").mkdir()
    (wf / "envs/other.txt").write_text("tabulate  # tables\n")
    (wf / "envs/pins.txt").write_text("# pins\nujson<7\n")
    (wf / "requirements.txt").write_text("# the jobs' packages\n\nujson>=5 # fast json\n\tnumpy \\\n  >=1.26\n"
                                         "-r envs/other.txt\n--constraint=envs/pins.txt\n-r requirements.txt\n")
    r = requirements(wf, [], [], False)
    assert r == Requirements("requirements.txt at the workflow's root", ("ujson>=5", "numpy >=1.26", "tabulate"),
                             ("ujson<7",))


def test_no_code_of_the_workflow_runs_on_the_host(wf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package whose build would write a marker, asked for by `evil @
    file://...`: refused by the check, by the CLI, and again by the download
    step; the marker is never written and pip never started."""
    marker = tmp_path / "marker"
    project = wf / "evil"
    project.mkdir()
    (project / "setup.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                                      "from setuptools import setup\nsetup(name='evil', version='1')\n")
    (wf / "requirements.txt").write_text(f"evil @ file://{project}\n")

    # The CLI, as a CI runner would start it: refused before the cluster is asked anything.
    r = subprocess.run([sys.executable, "-m", "minihpc", "run", str(wf)], capture_output=True, text=True,
                       check=False, stdin=subprocess.DEVNULL, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"minihpc: error: requirements.txt:1: 'evil @ file://{project}' is a direct reference" in r.stderr
    assert "SNAKEMAKE" not in r.stdout and not marker.exists()

    # In-process: nothing reaches the download, nor any program at all.
    downloads: list[object] = []
    started: list[object] = []
    monkeypatch.setattr(pyenv, "download", lambda *a: downloads.append(a))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    with pytest.raises(BadInput):
        requirements(wf, [], [], False)
    with pytest.raises(BadInput):
        plan(str(wf), None, None, None, [], [], False, [])
    assert downloads == [] and started == [] and not marker.exists()


def test_the_download_step_checks_every_line_again(wf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a))
    for bad in (Requirements("x", (f"evil @ file://{wf}",)), Requirements("x", ("ujson",), ("--index-url=http://x",))):
        with pytest.raises(BadInput):
            pyenv.download(bad, BASE, tmp_path)
    assert started == [] and not (tmp_path / "download.txt").exists()


class FakeCluster:
    """Enough of the cluster client for _install: its login node's pip
    answers with text a hostile user could have made it print."""

    class facts:  # noqa: N801 - stands in for Facts
        shared, lab_user, login = "/shared", "student", "login"

    def __init__(self, says: str) -> None:
        self.says, self.scripts = says, list[str]()

    def put(self, dest: str, sources: object, fresh: bool = False) -> Result:
        return Result("put", 0, "", 0.0)

    def sh(self, script: str, timeout: float = 0) -> Result:
        self.scripts.append(script)
        return Result(script, 1, self.says, 0.0)


@pytest.mark.parametrize("need", ["--index-url=http://x.example", "evil@file:///etc", "./evil"])
def test_a_package_the_cluster_names_gets_the_same_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         need: str) -> None:
    downloads: list[object] = []
    monkeypatch.setattr(pyenv, "download", lambda *a: downloads.append(a))
    cluster = FakeCluster(f"ERROR: No matching distribution found for {need}\n")
    with pytest.raises(MinihpcError) as e:
        pyenv._install(cluster, Requirements("x", ("ujson",)), BASE, "py-000000000000", "b", tmp_path, 0.0,  # type: ignore[arg-type]
                       lambda _: None)
    assert "not a plain requirement" in e.value.what and downloads == [], e.value
    assert cluster.scripts[-1].startswith("rm -rf /shared/.envs/.build-py-000000000000-b"), "its staging goes"

"""The minihpc CLI on a bare python3: help everywhere, bad input refused with
exit 2 and one `what; fix` line before anything starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from minihpc.errors import MinihpcError
from minihpc.facts import Facts

ROOT = Path(__file__).resolve().parents[2]
BARE = "/usr/bin/python3"  # the system's, no venv, nothing installed


def cli_in_checkout(*args: str) -> subprocess.CompletedProcess[str]:
    """`python3 -m minihpc` from the checkout, as the Makefile runs it."""
    return subprocess.run([BARE, "-m", "minihpc", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"}, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["up", "--help"], ["nfs", "set", "--help"], ["scratch", "--help"],
                                  ["demo", "--help"], ["bench", "--help"], ["destroy", "--help"],
                                  ["fault", "--help"], ["timeline", "--help"],
                                  ["env", "list", "--help"], ["env", "remove", "--help"], ["site", "check", "--help"],
                                  ["ssh", "--help"], ["class", "--help"], ["class", "add", "--help"]])
def test_help_works_on_a_bare_python(args: list[str]) -> None:
    r = cli_in_checkout(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: minihpc"), r.stdout


def test_every_make_target_has_a_verb() -> None:
    help_text = cli_in_checkout("--help").stdout
    for verb in ("up", "down", "destroy", "status", "shell", "logs", "nfs", "scratch", "lab", "confirm", "core",
                 "demo", "bench", "fault", "timeline", "env", "site", "ssh", "class"):
        assert f"    {verb} " in help_text, verb


@pytest.mark.parametrize(("args", "message"), [
    (["up", "--nodes", "17"], "minihpc: error: NODES=17 is out of range; allowed 1 to 16"),
    (["up", "--mem-mb", "100"], "minihpc: error: NODE_MEM_MB=100 is out of range"),
    (["up", "--nfs-profile", "fast"], "minihpc: error: no NFS profile 'fast'; choose one of: off, linux"),
    (["up", "--timeout", "3"], "minihpc: error: --timeout 3 is too short; give the cluster at least 10 s"),
    (["up", "--subnet", "10.0.0.0/33"], "minihpc: error: SUBNET='10.0.0.0/33' is not an IPv4 network"),
    (["up", "--subnet", "203.0.113.0/24"], "minihpc: error: SUBNET=203.0.113.0/24 must be a private (RFC 1918)"),
    (["up", "--subnet", "10.0.0.0/24; rm -rf /"], "minihpc: error: SUBNET='10.0.0.0/24; rm -rf /' is not an IPv4"),
    (["nfs", "set", "nope"], "minihpc: error: no NFS profile 'nope'"),
    (["nfs", "set", "off", "--fault", "EBOGUS:op=read"], "minihpc: error: fault error 'EBOGUS' is not one of"),
    (["core", "9"], "minihpc: error: no core '9'; choose one of 1, 2, 3-latency"),
    (["demo", "nosuch"], "minihpc: error: no demo 'nosuch'; choose one of unwritable-scratch"),
    (["destroy"], "needs confirmation and there is no terminal to ask; pass --yes (make: YES=1)"),
    (["frobnicate"], "minihpc: error: argument COMMAND: invalid choice: 'frobnicate'"),
    (["fault", "melt", "c1"], "minihpc: error: no fault 'melt'; choose one of kill, stop, start"),
    (["fault", "stop-snakemake", "--signal", "HUP"], "minihpc: error: argument --signal: invalid choice: 'HUP'"),
    (["timeline", "--run", "abc"], "minihpc: error: --run 'abc' is not a SLURM run ID; give the UUID"),
    (["timeline", "--since", "yesterday"], "minihpc: error: --since 'yesterday' is not a time sacct takes here"),
    (["timeline", "--until", "now"], "minihpc: error: --until without --since; give the window's start too"),
    (["timeline", "--run", "0" * 8 + "-0000-0000-0000-" + "0" * 12, "--since", "now"],
     "minihpc: error: --run and --since both given"),
    (["run", "tests/workflows/pyreqs", "--no-requirements", "--pip", "ujson"],
     "minihpc: error: --no-requirements with --requirements or --pip; give one or the other"),
    (["run", "tests/workflows/pyreqs", "--requirements", "nope.txt"], "minihpc: error: --requirements nope.txt: "),
    (["run", "tests/workflows/pyreqs", "--", "--use-conda"],
     "minihpc: error: '--use-conda' asks for conda, which this cluster does not have; "
     "drop it and give the rules' packages as pip requirements"),
    (["env", "remove"], "minihpc: error: give environment names or --all, not both or neither"),
    (["modules", "add", "x;id", "-r", "tests/workflows/modules/cowsay.txt"], "minihpc: error: 'x;id' is not a "
     "module name"),
    (["modules", "add", "x/1", "-r", "nope.txt"], "minihpc: error: --requirements nope.txt: no such file"),
    (["modules", "remove", "x"], "minihpc: error: x: which version?"),
    (["up", "--ssh-address", "0.0.0.0"], "minihpc: error: SSH_ADDRESS=0.0.0.0 publishes the login node's sshd "
                                          "beyond this machine"),
    (["up", "--ssh-address", "localhost;id"], "minihpc: error: SSH_ADDRESS='localhost;id' is not an IPv4 address"),
    (["class", "add", "0"], "minihpc: error: class add 0: a class has at least one learner; give how many"),
    (["class", "add", "1000"], "minihpc: error: class add 1000: "),
    (["class", "add", "3;id"], "minihpc: error: argument N: '3;id' is not a number of learners"),
    (["class", "remove", "x;id", "--yes"], "minihpc: error: 'x;id' is not a learner's name; learners are learner01"),
    (["class", "remove"], "minihpc: error: give learners' names or --all, not both or neither"),
    (["class", "check", "$(id)"], "minihpc: error: '$(id)' is not a learner's name"),
    (["up", "--learners", "0"], "minihpc: error: class add 0: a class has at least one learner"),
    (["up", "--learners", "2;id"], "minihpc: error: argument --learners: '2;id' is not a number of learners"),
    (["site", "check", "nope.yaml"], "minihpc: error: no site file at nope.yaml; give the path of a site file"),
    (["run", "tests/workflows/pyreqs", "--site", "nope.yaml"], "minihpc: error: no site file at nope.yaml"),
    # The bare python3 has no matplotlib: said before the cluster is asked anything.
    (["timeline"], "minihpc: error: drawing a timeline needs matplotlib, which is not installed; "
                   "pip install 'minihpc[timeline]'"),
])
def test_bad_input_is_refused_with_exit_2_and_the_fix(args: list[str], message: str) -> None:
    r = cli_in_checkout(*args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_missing_facts_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MinihpcError) as e:
        Facts.read(tmp_path)
    assert str(e.value) == f"no cluster facts at {tmp_path}/cluster.json; bring a cluster up first: minihpc up"

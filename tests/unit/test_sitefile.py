"""The site file (minihpc.sitefile): every field checked before anything
connects; each problem is one error naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from minihpc.errors import BadInput
from minihpc.sitefile import load

GOOD = """\
ssh:
  host: login.example.org
  port: 2222
  user: jdoe
  identity: key
  known_hosts: known_hosts
slurm:
  partition: short
  account: proj
work_dir: /scratch/jdoe/minihpc
scratch: /tmp
setup: module load snakemake
limits:
  minutes: 3
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "key").write_text("not really a key\n")
    (tmp_path / "known_hosts").write_text("")
    p = tmp_path / "site.yaml"
    p.write_text(GOOD)
    return p


def test_a_good_site_file_is_read_with_defaults(site: Path) -> None:
    s = load(site)
    assert (s.host, s.port, s.user, s.partition, s.account) == ("login.example.org", 2222, "jdoe", "short", "proj")
    assert s.identity == site.parent / "key" and s.known_hosts == site.parent / "known_hosts"
    assert (s.work_dir, s.scratch, s.setup, s.minutes, s.mem_mb) == ("/scratch/jdoe/minihpc", "/tmp",
                                                                     "module load snakemake", 3, 500)
    assert s.sbatch_options() == ["--partition=short", "--time=3", "--mem=500M", "--account=proj"]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("  port: 2222\n", "  prot: 2222\n", "ssh.prot: unknown key; known keys under ssh: host, port, user"),
    ("work_dir:", "workdir:", "workdir: unknown key; known keys: ssh, slurm, limits, work_dir"),
    ("  host: login.example.org\n", "", "ssh.host: missing; give the login node's host name or address"),
    ("  partition: short\n", "", "slurm.partition: missing"),
    ("work_dir: /scratch/jdoe/minihpc\n", "", "work_dir: missing"),
    ("  port: 2222\n", "  port: 99999\n", "ssh.port: 99999 is out of range"),
    ("  port: 2222\n", "  port: ssh\n", "ssh.port: 'ssh' is not a whole number"),
    ("  host: login.example.org\n", "  host: 'login; rm -rf /'\n", "ssh.host: 'login; rm -rf /' is not a host"),
    ("  user: jdoe\n", "  user: 'jdoe --x'\n", "ssh.user: 'jdoe --x' is not a plain name"),
    ("  identity: key\n", "  identity: nokey\n", "ssh.identity: no file at"),
    ("  partition: short\n", "  partition: 'short,long'\n", "slurm.partition: 'short,long' is not a plain name"),
    ("work_dir: /scratch/jdoe/minihpc\n", "work_dir: scratch/jdoe\n", "work_dir: 'scratch/jdoe' is not a plain"),
    ("work_dir: /scratch/jdoe/minihpc\n", "work_dir: /scratch/jdoe/../../etc\n", "is not a plain absolute path"),
    ("work_dir: /scratch/jdoe/minihpc\n", "work_dir: /home\n", "work_dir: '/home' is a system or top-level"),
    ("work_dir: /scratch/jdoe/minihpc\n", "work_dir: /data\n", "work_dir: '/data' is a system or top-level"),
    # Directories reach job scripts and the site's shell: nothing a shell would read its own way.
    ("work_dir: /scratch/jdoe/minihpc\n", "work_dir: '/scratch/jdoe/my work'\n", "holds ' ', which a directory"),
    ("work_dir: /scratch/jdoe/minihpc\n", "work_dir: '/scratch/jdoe/$(touch x)'\n", "holds '$', '(', ' ', ')'"),
    ("work_dir: /scratch/jdoe/minihpc\n", 'work_dir: "/scratch/jdoe/a\\nrm -rf ~"\n', "holds '\\n', ' ', '~'"),
    ("work_dir: /scratch/jdoe/minihpc\n", "work_dir: '/scratch/jdoe/`id`'\n", "holds '`'"),
    ("scratch: /tmp\n", "scratch: '/tmp;reboot'\n", "scratch: '/tmp;reboot' holds ';'"),
    ("scratch: /tmp\n", "scratch: \"/tmp/a'b\"\n", "holds \"'\""),
    ("  port: 2222\n", "  port: 2222\n  jump: 'bastion -oProxyCommand=x'\n", "ssh.jump: 'bastion -oProxyCommand"),
    ("  port: 2222\n", "  port: 2222\n  jump: bastion:70000\n", "ssh.jump: 'bastion:70000' is not"),
    ("  minutes: 3\n", "  minutes: 90\n", "limits.minutes: 90 is out of range; proof jobs are short"),
    ("slurm:\n  partition: short\n  account: proj\n", "slurm: short\n", "slurm: is str, not a mapping"),
])
def test_bad_site_files_name_the_field_and_the_fix(site: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    site.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(BadInput) as e:
        load(site)
    assert message in str(e.value), str(e.value)
    assert e.value.fix and "\n" not in str(e.value)


def test_not_yaml_or_not_there(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no site file at"):
        load(tmp_path / "nope.yaml")
    (tmp_path / "s.yaml").write_text("ssh: [unclosed\n")
    with pytest.raises(BadInput, match="is not valid YAML"):
        load(tmp_path / "s.yaml")


def test_the_cli_lists_the_site_checks_proofs_in_order() -> None:
    from minihpc import sitecheck
    from minihpc.commands.site import PROOF_NAMES
    assert [*sitecheck.CORES, *sitecheck.OWN] == list(PROOF_NAMES)


def test_staging_alone_on_a_site_without_scratch_is_refused_before_connecting(site: Path) -> None:
    import subprocess
    import sys
    site.write_text(GOOD.replace("scratch: /tmp", "scratch: null"))
    r = subprocess.run([sys.executable, "-m", "minihpc", "site", "check", str(site), "--only", "staging"],
                       capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 2 and "--only staging, but" in r.stderr and "gives no scratch" in r.stderr, r.stderr


def test_minihpcs_profiles_are_made_for_the_site(site: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    s = load(site)
    staging = s.profile((root / "profiles/slurm-staging/config.yaml").read_text())
    assert "  slurm_partition: short\n  mem_mb: 500\n  runtime: 3\n" in staging.replace("  slurm_account: proj\n", "")
    assert "  slurm_account: proj\n" in staging
    assert "local-storage-prefix: /tmp/$USER/main" in staging and "/scratch/" not in staging
    site.write_text(GOOD.replace("  account: proj\n", "").replace("scratch: /tmp", "scratch: null"))
    plain = load(site).profile((root / "profiles/slurm-staging/config.yaml").read_text())
    assert "slurm_account" not in plain, "no account: the site's default"
    assert "/scratch/$USER/main" in plain, "no scratch: the prefixes stay as they are"


def test_a_jump_host_is_held_to_the_sites_known_hosts_key_and_batch_mode(site: Path, tmp_path: Path) -> None:
    """ssh -J would connect to the jump host with none of the options given on
    the command line: the jump gets its own ssh, with the same checks. Its
    ProxyCommand is run as ssh runs it (through a shell, %-tokens expanded),
    with `ssh` standing for a printer of its argv, so quoting is proven too."""
    import shlex
    import subprocess

    from minihpc.transport import SshTransport
    odd = tmp_path / "my keys %d"
    odd.mkdir()
    (odd / "id key").write_text("not really a key\n")
    site.write_text(GOOD.replace("  identity: key\n", f"  identity: '{odd}/id key'\n  jump: ops@bastion:2200\n"))
    argv = SshTransport(load(site), "login").ssh()
    assert "-J" not in argv
    proxy = next(a.removeprefix("ProxyCommand=") for a in argv if a.startswith("ProxyCommand="))
    expanded = proxy.replace("%h", "login.example.org").replace("%p", "2222").replace("%%", "%")
    printer = tmp_path / "bin"
    printer.mkdir()
    (printer / "ssh").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (printer / "ssh").chmod(0o755)
    out = subprocess.run(["sh", "-c", expanded], capture_output=True, text=True, check=True,
                         env={"PATH": f"{printer}:/usr/bin:/bin"}).stdout.splitlines()
    assert out[:2] == ["-p", "2200"] and out[-3:] == ["-W", "login.example.org:2222", "ops@bastion"], out
    pairs = {out[i]: out[i + 1] for i in range(len(out) - 1) if out[i] in ("-o", "-i")}
    assert pairs["-i"] == f"{odd}/id key", shlex.join(out)
    opts = [out[i + 1] for i in range(len(out) - 1) if out[i] == "-o"]
    for want in ("StrictHostKeyChecking=yes", "BatchMode=yes", "IdentitiesOnly=yes",
                 f"UserKnownHostsFile={site.parent / 'known_hosts'}"):
        assert want in opts, (want, opts)


def test_commands_on_a_site_spread_over_a_few_connections_by_how_many_each_has_open(site: Path) -> None:
    """sshd allows MaxSessions (10 by default) on one connection: the proofs
    side by side hold more, so each command goes to the least busy of a few."""
    from minihpc.transport import SshTransport
    t = SshTransport(load(site), "login")
    opened: list[int] = []
    def ensure(connection: int, opening, ready) -> None:  # no site to reach here
        if opening is not None:
            opened.append(connection)
            opening.set()
    t._ensure = ensure
    paths = [next(a for a in argv if a.startswith("ControlPath="))
             for argv in (t.command("login", "true", t.site.user) for _ in range(9))]
    assert len(set(paths)) == t.CONNECTIONS and max(paths.count(p) for p in paths) == 3
    assert sorted(opened) == list(range(t.CONNECTIONS)), "each opened by the first command on it, alone"
    argv = t.command("login", "true", t.site.user)  # a fourth on one of them
    for _ in range(3):
        t.done(argv)
    assert t.command("login", "true", t.site.user)[argv.index(next(a for a in argv if a.startswith("ControlPath=")))] \
        == next(a for a in argv if a.startswith("ControlPath=")), "the connection whose commands ended is next"

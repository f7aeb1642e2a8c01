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

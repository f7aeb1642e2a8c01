"""The Slurm release knob: named by major or exact version, kept by a
cluster once made, and followed by the rendered files and the images' tag."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from minihpc import bringup, configs, files, releases
from minihpc.errors import BadInput
from minihpc.topology import Topology

ROOT = Path(__file__).resolve().parents[2]


def test_a_release_is_named_by_its_major_or_its_packaged_version() -> None:
    assert releases.named("22.05").debian == "bookworm"
    assert releases.named("26.05.5").debian == "forky"
    assert releases.named("") is releases.default() and releases.DEFAULT == "24.11"
    with pytest.raises(BadInput) as e:
        releases.named("23.02")
    assert str(e.value) == ("--slurm '23.02' is not a Slurm release minihpc builds; give one of 22.05 (Debian 12: "
                            "22.05.8), 24.11 (Debian 13: 24.11.5), 26.05 (Debian 14 (testing): 26.05.5); the default "
                            "is 24.11")


def test_a_cluster_keeps_its_release_and_another_is_refused_with_nothing_changed(made) -> None:
    run = made(releases.named("22.05"), jobs=3)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert bringup.check_release("").slurm == "22.05"  # up without --slurm: the cluster's own
    assert bringup.check_release("22.05.8").slurm == "22.05"
    with pytest.raises(BadInput) as e:
        bringup.check_release("26.05")
    assert str(e.value).startswith("--slurm 26.05: this cluster runs Slurm 22.05, with 3 job(s) queued or running, "
                                   "and a cluster keeps its release")
    assert e.value.fix.endswith("minihpc destroy --yes (removes its jobs, accounting and /shared), then minihpc up "
                                "--slurm 26.05")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_no_cluster_yet_takes_the_release_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bringup, "NODES_FILE", tmp_path / "none.yml")
    assert bringup.check_release("26.05").debian == "forky"
    assert bringup.check_release("") is releases.default()


def test_the_rendered_files_follow_the_release(tmp_path: Path) -> None:
    t = Topology.from_env({})
    for r in releases.RELEASES.values():
        run = tmp_path / r.slurm
        configs.render(t, run, ROOT / "docker-compose.yml", r)
        assert r.cgroup_conf in (run / "etc/cgroup.conf").read_text().splitlines()
        env = dict(line.split("=", 1) for line in (run / "release.env").read_text().splitlines()
                   if not line.startswith("#"))
        assert env == {"SUITE": r.debian, "BASE_IMAGE": r.base_image, "LOCK": r.debian, "RELEASE_TAG": r.tag,
                       "RELEASE_PACKAGES": f"'{' '.join(r.packages)}'"}
        assert (run / "cluster.json").read_text().count(f'"slurm": "{r.slurm}"') == 1
    assert "CgroupPlugin=autodetect" in (tmp_path / "22.05/etc/cgroup.conf").read_text()
    assert "libpmix-dev" in (tmp_path / "22.05/release.env").read_text()


def test_a_release_may_change_or_drop_a_slurm_conf_key() -> None:
    r = releases.Release("0.0", "0.0.0", "x", "0", "3", conf={"KillWait": "KillWait=9", "SwitchType": ""})
    text = configs.slurm_conf(Topology.from_env({}), release=r)
    assert "KillWait=9" in text.splitlines() and "KillWait=5" not in text
    assert not any(line.startswith("SwitchType=") for line in text.splitlines())
    assert configs.slurm_conf(Topology.from_env({})) == configs.slurm_conf(Topology.from_env({}),
                                                                           release=releases.default())


def test_each_release_has_its_own_image_tag(tmp_path: Path) -> None:
    tags = set()
    for r in releases.RELEASES.values():
        run = tmp_path / r.slurm
        files.write_if_changed(run / "release.env", configs.release_env(r))
        out = subprocess.run([str(ROOT / "cluster/image-tag.sh")], capture_output=True, text=True, check=True,
                             env={**os.environ, "MINIHPC_RUN_DIR": str(run)}).stdout.strip()
        assert out.endswith(f"-{r.tag}")
        tags.add(out.split("-")[0])
    assert len(tags) == len(releases.RELEASES)  # the release's packages are part of the hash


@pytest.mark.parametrize(("version", "release", "same"), [
    ("22.05.8", "22.05", True), ("26.05.5", "26.05", True), ("23.11.4", "24.11", False), ("25.05.1", "24.11", False),
    ("25.11.0", "26.05", False), ("21.08.8", "22.05", False)])
def test_a_sites_slurm_is_matched_to_the_nearest_release_built_here(version: str, release: str, same: bool) -> None:
    r, exact = releases.nearest(version)
    assert (r.slurm, exact) == (release, same)


def test_the_site_check_prints_the_line_that_reproduces_the_site() -> None:
    from minihpc.sitecheck import reproduce
    v = {"slurm": "23.11.4", "snakemake": "8.30.0", "snakemake-executor-plugin-slurm": "0.15.1",
         "snakemake-executor-plugin-slurm-jobstep": "0.2.1", "snakemake-storage-plugin-fs": "-"}
    assert reproduce(v).splitlines() == [
        "site versions: slurm 23.11.4, snakemake 8.30.0, snakemake-executor-plugin-slurm 0.15.1, "
        "snakemake-executor-plugin-slurm-jobstep 0.2.1, snakemake-storage-plugin-fs -",
        "reproduce here: minihpc up --slurm 24.11 --snakemake 8.30.0 (the nearest Slurm minihpc builds (22.05, "
        "24.11, 26.05); the site's 23.11.4 is not among them; the site's snakemake-executor-plugin-slurm is 0.15.1, "
        "this set's 2.8.0)"]
    # A Snakemake pinned only for another release: that release's default set, said.
    assert reproduce({**v, "slurm": "22.05.8", "snakemake": "8.30.0"}).endswith(
        "reproduce here: minihpc up --slurm 22.05 (Snakemake 8.30.0 is pinned here for Slurm 24.11 only; the site's "
        "snakemake-executor-plugin-slurm is 0.15.1, this set's 2.8.0)")
    assert reproduce({**v, "slurm": "24.11.5", "snakemake": "8.27.1", "snakemake-executor-plugin-slurm": "2.8.0"}) \
        .endswith("reproduce here: minihpc up --slurm 24.11 --snakemake 8.30.0 (the nearest pinned Snakemake (8.30.0; "
                  "the sets: 9.27.1, 8.30.0); the site's 8.27.1 is not among them)")
    assert reproduce({**v, "slurm": "24.11.5", "snakemake": "9.27.1", "snakemake-executor-plugin-slurm": "2.8.0",
                      "snakemake-storage-plugin-fs": "1.1.3"}).endswith("reproduce here: minihpc up --slurm 24.11")
    assert reproduce({**v, "slurm": "-"}).endswith("reproduce here: minihpc up (the site's Slurm version was not "
                                                   "readable)")

"""The Snakemake stack knobs: a set is picked by any of its versions, a
combination no set holds is refused with the sets that work, a cluster keeps
its stack, and the images and locks follow it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from minihpc import bringup, configs, files, releases, stacks
from minihpc.errors import BadInput
from minihpc.facts import Facts

ROOT = Path(__file__).resolve().parents[2]


def test_a_set_is_picked_by_any_of_its_versions_and_the_default_by_none() -> None:
    assert stacks.choose() is stacks.default() and stacks.default().snakemake.startswith("9.")
    old = stacks.choose(snakemake="8.30.0")
    assert (old.slurm_plugin, old.jobstep_plugin, old.fs_plugin) == ("2.8.0", "0.6.1", "1.0.6")
    assert stacks.choose(fs_plugin="1.0.6", suite="trixie") is old
    assert stacks.choose(slurm_plugin="2.8.0") is stacks.default()  # both hold it: the first, newest


@pytest.mark.parametrize(("asked", "said"), [
    # Snakemake 8's storage interface is <4; fs 1.1 needs >=4.1: pip cannot install them together.
    ({"snakemake": "8.30.0", "fs_plugin": "1.1.3"}, "--snakemake 8.30.0 with --fs-plugin 1.1.3: no set minihpc "
                                                     "pins has these versions together"),
    ({"slurm_plugin": "1.9.2"}, "--slurm-plugin 1.9.2: no set minihpc pins has it"),
    ({"snakemake": "7.32.4"}, "--snakemake 7.32.4: no set minihpc pins has it")])
def test_a_combination_no_set_holds_is_refused_with_the_sets_that_work(asked: dict[str, str], said: str) -> None:
    with pytest.raises(BadInput) as e:
        stacks.choose(**asked, suite="trixie")
    assert e.value.what == said
    assert e.value.fix == ("give one of the sets known to work together: --snakemake 9.27.1 --slurm-plugin 2.8.0 "
                           "--fs-plugin 1.1.3; --snakemake 8.30.0 --slurm-plugin 2.8.0 --fs-plugin 1.0.6")


def test_a_set_not_pinned_for_the_release_is_refused_naming_the_releases_it_is() -> None:
    with pytest.raises(BadInput) as e:
        stacks.choose(snakemake="8.30.0", suite="forky")
    assert e.value.what == ("Snakemake 8.30.0 (slurm plugin 2.8.0, jobstep 0.6.1, fs plugin 1.0.6) is pinned for "
                            "Slurm 24.11 (Debian trixie) only, not Debian forky's")
    assert e.value.fix.startswith("give --slurm 24.11, or another set: ")


def test_every_set_has_its_locks_on_every_release_it_names() -> None:
    for s in stacks.STACKS:
        assert set(s.suites) <= set(releases.SUITES)
        for suite in s.suites:
            lock = (ROOT / "cluster/locks" / f"{s.lock(suite)}.lock").read_text()
            assert f"\nsnakemake=={s.snakemake}\n" in lock and f"\nsnakemake-storage-plugin-fs=={s.fs_plugin}\n" in lock
            assert f"\nsnakemake-executor-plugin-slurm=={s.slurm_plugin}\n" in lock
            assert f"\nsnakemake-executor-plugin-slurm-jobstep=={s.jobstep_plugin}\n" in lock
            assert (ROOT / "cluster/locks" / f"{s.lock(suite)}-scipy-stack.lock").exists()


def test_a_cluster_keeps_its_stack_and_another_is_refused_with_nothing_changed(made) -> None:
    old = stacks.choose("8.30.0")
    run = made(stack=old, jobs=2)
    assert Facts.read(run).stack is old and Facts.read(run).snakemake == "8.30.0"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert bringup.check_stack({}, releases.default()) is old  # up without the flags: the cluster's own
    assert bringup.check_stack({"FS_PLUGIN_VERSION": "1.0.6"}, releases.default()) is old
    with pytest.raises(BadInput) as e:
        bringup.check_stack({"SNAKEMAKE_VERSION": "9.27.1"}, releases.default())
    assert e.value.what == ("Snakemake 9.27.1 (slurm plugin 2.8.0, jobstep 0.6.1, fs plugin 1.1.3): this cluster runs "
                            "Snakemake 8.30.0 (slurm plugin 2.8.0, jobstep 0.6.1, fs plugin 1.0.6), with 2 job(s) "
                            "queued or running, and a cluster keeps the stack its images were built with; nothing was "
                            "changed")
    assert e.value.fix.endswith("then minihpc up --snakemake 9.27.1")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_each_stack_has_its_own_lock_and_image_tag(tmp_path: Path) -> None:
    tags = set()
    for s in stacks.STACKS:
        env = configs.release_env(releases.default(), s)
        assert f"\nLOCK={s.lock('trixie')}\n" in env
        run = tmp_path / s.snakemake
        files.write_if_changed(run / "release.env", env)
        out = subprocess.run([str(ROOT / "cluster/image-tag.sh")], capture_output=True, text=True, check=True,
                             env={**os.environ, "MINIHPC_RUN_DIR": str(run)}).stdout.strip()
        assert out.endswith(f"-slurm24.11{s.tag}")
        tags.add(out)
    assert len(tags) == len(stacks.STACKS) and stacks.default().tag == ""


def test_the_plan_refuses_a_bad_pair_before_anything_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bringup, "NODES_FILE", tmp_path / "none.yml")
    monkeypatch.setattr(bringup, "_other_cluster", lambda: None)
    with pytest.raises(BadInput, match="no set minihpc pins has these versions together"):
        bringup.plan({"SNAKEMAKE_VERSION": "8.30.0", "FS_PLUGIN_VERSION": "1.1.3"})
    with pytest.raises(BadInput, match="pinned for Slurm 24.11"):
        bringup.plan({"SNAKEMAKE_VERSION": "8.30.0", "SLURM_RELEASE": "22.05"})
    assert bringup.plan({"SNAKEMAKE_VERSION": "8.30.0"}).stack is stacks.choose("8.30.0")


def test_a_version_the_clusters_own_set_holds_keeps_it(made) -> None:
    old = stacks.choose("8.30.0")
    made(stack=old)
    # 2.8.0 is in both sets; the first (9.27.1) would be picked without a cluster, but this one holds it.
    assert bringup.check_stack({"SLURM_PLUGIN_VERSION": "2.8.0"}, releases.default()) is old


def test_a_cluster_of_a_set_no_longer_pinned_says_so_and_is_not_changed(made) -> None:
    run = made()
    facts = (run / "cluster.json").read_text().replace('"fs_plugin": "1.1.3"', '"fs_plugin": "1.0.0"')
    (run / "cluster.json").write_text(facts)
    assert not Facts.read(run).stack.pinned and "fs plugin 1.0.0" in Facts.read(run).stack.describe()
    with pytest.raises(BadInput) as e:
        bringup.check_stack({}, releases.default())
    assert e.value.what == ("this cluster was built with Snakemake 9.27.1 (slurm plugin 2.8.0, fs plugin 1.0.0), "
                            "which this minihpc no longer pins; nothing was changed")


def test_a_release_env_from_before_stacks_gives_the_default_lock(tmp_path: Path) -> None:
    """compose.sh and the image tag read a release.env without LOCK as the default set's."""
    env = configs.release_env(releases.default())
    old = "".join(line + "\n" for line in env.splitlines() if not line.startswith("LOCK="))
    files.write_if_changed(tmp_path / "release.env", old)
    script = f'. {tmp_path}/release.env; LOCK=${{LOCK:-$SUITE}}; echo "$LOCK"'
    assert subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout.strip() == "trixie"
    assert "LOCK=${LOCK:-$SUITE}" in (ROOT / "cluster/compose.sh").read_text()

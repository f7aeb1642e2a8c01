"""The paths among Snakemake's arguments that `minihpc run` honours as
Snakemake does (-s/--snakefile, -d/--directory, --configfile), checked before
anything is touched: a workflow from the wild whose Snakefile is
`.Snakefile` runs with `-- --snakefile .Snakefile`."""

from __future__ import annotations

from pathlib import Path

import pytest

from minihpc.errors import BadInput
from minihpc.runner import plan, snakemake_paths


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    (tmp_path / ".Snakefile").write_text("rule all:\n    output: 'x'\n    shell: 'touch {output}'\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config/a.yaml").write_text("n: 1\n")
    (tmp_path / "config/b.yaml").write_text("n: 2\n")
    return tmp_path


def run_plan(wf: Path, *args: str):
    return plan(str(wf), None, None, None, [], [], False, list(args))


@pytest.mark.parametrize("args", [
    ["--snakefile", ".Snakefile"], ["--snakefile=.Snakefile"], ["-s", ".Snakefile"], ["-s.Snakefile"],
    ["--cores", "2", "-s", ".Snakefile", "all"],
])
def test_a_snakefile_named_in_the_arguments_is_the_one_looked_for(wf: Path, args: list[str]) -> None:
    assert run_plan(wf, *args).snakemake_args == args


def test_without_one_the_usual_names_are_looked_for_and_the_fix_names_the_flag(wf: Path) -> None:
    with pytest.raises(BadInput) as e:
        run_plan(wf)
    assert "no Snakefile in" in e.value.what and "--snakefile FILE" in e.value.fix


def test_configfiles_and_a_directory_are_read_as_snakemake_reads_them() -> None:
    assert snakemake_paths(["--configfile", "a.yaml", "b.yaml", "-n", "-d", "out", "--configfiles=c.yaml",
                            "--snakefile", "S", "target"]) == [
        ("--configfile", "a.yaml"), ("--configfile", "b.yaml"), ("--directory", "out"),
        ("--configfile", "c.yaml"), ("--snakefile", "S")]
    assert snakemake_paths(["-n", "--", "-s"]) == [], "after --, targets"
    assert snakemake_paths(["--dry-run", "-S", "--set-threads", "a=2"]) == [], "other flags are Snakemake's"


def test_every_configfile_must_be_there(wf: Path) -> None:
    run_plan(wf, "-s", ".Snakefile", "--configfile", "config/a.yaml", "config/b.yaml")
    with pytest.raises(BadInput) as e:
        run_plan(wf, "-s", ".Snakefile", "--configfile", "config/a.yaml", "config/c.yaml")
    assert e.value.what.startswith("--configfile config/c.yaml: no such file in")


def test_a_working_directory_need_not_exist_yet(wf: Path) -> None:
    run_plan(wf, "-s", ".Snakefile", "-d", "work/run1")


@pytest.mark.parametrize(("args", "what"), [
    (["--snakefile", "/etc/passwd"], "--snakefile /etc/passwd is outside the workflow directory"),
    (["-s", "../other/Snakefile"], "--snakefile ../other/Snakefile is outside the workflow directory"),
    (["-s", ".Snakefile", "--configfile", "/root/x.yaml"], "--configfile /root/x.yaml is outside"),
    (["-s", ".Snakefile", "-d", "../elsewhere"], "--directory ../elsewhere is outside"),
    (["-s", ".Snakefile", "--directory=/tmp"], "--directory /tmp is outside"),
    (["-s", "missing"], "--snakefile missing: no such file in"),
    (["--snakefile"], "--snakefile names no path"),
    (["-s", ".Snakefile", "--configfile", "-n"], "--configfile names no path"),
    (["--snakefile="], "--snakefile= names no path"),
])
def test_paths_outside_or_missing_are_refused_with_the_flag_named(wf: Path, args: list[str], what: str) -> None:
    """Only the workflow directory goes to the cluster: a path outside it
    would be read there, from someone else's files, or not at all."""
    with pytest.raises(BadInput) as e:
        run_plan(wf, *args)
    assert e.value.what.startswith(what), e.value.what

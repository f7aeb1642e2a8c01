"""What `minihpc run` is asked to install, checked before anything is
touched: requirements files (with -r/-c includes), --pip, the default
requirements.txt, and software deployment the cluster does not have."""

from __future__ import annotations

from pathlib import Path

import pytest

from minihpc import pyenv
from minihpc.errors import BadInput
from minihpc.pyenv import Base, Requirements, name_of, requirements
from minihpc.runner import deployment, deployment_notices, plan

BASE = Base("3.13.5", "/opt/minihpc/venv", "cp313", "/opt/minihpc/venv/lib/python3.13/site-packages",
            "lib/python3.13/site-packages", ["manylinux_2_41_x86_64"], ["snakemake==9.27.1"])


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text("rule all:\n    output: 'x'\n    shell: 'touch {output}'\n")
    return tmp_path


def test_a_requirements_txt_at_the_root_is_picked_up_and_said_so(wf: Path) -> None:
    (wf / "requirements.txt").write_text("# plotting\nnumpy>=2  # arrays\n\nmatplotlib \\\n  >=3.8\n")
    r = requirements(wf, [], [], False)
    assert r == Requirements("requirements.txt at the workflow's root", ("numpy>=2", "matplotlib >=3.8"))
    assert requirements(wf, [], [], True) is None, "--no-requirements runs without it"


def test_without_any_requirements_there_is_no_environment(wf: Path) -> None:
    assert requirements(wf, [], [], False) is None


def test_includes_and_pip_are_flattened(wf: Path) -> None:
    (wf / "envs").mkdir()
    (wf / "envs/base.txt").write_text("ujson\n")
    (wf / "envs/pins.txt").write_text("ujson<7\n")
    (wf / "envs/req.txt").write_text("-r base.txt\n-c pins.txt\ntabulate\n")
    r = requirements(wf, ["envs/req.txt"], ["humanize==4.*"], False)
    assert r is not None
    assert r.lines == ("humanize==4.*", "ujson", "tabulate")
    assert r.constraints == ("ujson<7",)


def test_the_name_follows_the_content_and_the_cluster_environment(wf: Path) -> None:
    a = Requirements("x", ("ujson",))
    assert name_of(a, BASE) == name_of(Requirements("another source", ("ujson",)), BASE)
    assert name_of(a, BASE) != name_of(Requirements("x", ("ujson<7",)), BASE)
    newer = Base(**{**BASE.__dict__, "freeze": ["snakemake==9.28.0"]})
    assert name_of(a, BASE) != name_of(a, newer), "a new cluster environment makes a new one"
    assert name_of(a, BASE).startswith("py-") and len(name_of(a, BASE)) == 15


@pytest.mark.parametrize(("files", "pip", "none", "content", "message"), [
    (["nope.txt"], [], False, None, "--requirements nope.txt: no such file"),
    ([], ["ujson"], True, None, "--no-requirements with --requirements or --pip"),
    ([], ["-e ."], False, None, "--pip: '-e .' is an editable install"),
    (["r.txt"], [], False, "-e ./mypkg\n", "r.txt:1: '-e ./mypkg' is an editable install, which the cluster "
                                             "cannot build offline"),
    (["r.txt"], [], False, "ujson\n-r missing.txt\n", "r.txt:2: missing.txt not found"),
    (["r.txt"], [], False, "--pre\nujson\n", "r.txt:1: '--pre' is a pip option"),
    (["r.txt"], [], False, "# nothing\n\n", "lists no packages"),
])
def test_bad_requirements_are_refused_with_the_fix(wf: Path, files, pip, none, content, message) -> None:
    if content is not None:
        (wf / "r.txt").write_text(content)
    with pytest.raises(BadInput) as e:
        requirements(wf, files, pip, none)
    assert message in e.value.what and e.value.fix


@pytest.mark.parametrize("args", [["--use-conda"], ["--sdm", "conda"], ["--sdm", "env-modules", "conda"],
                                  ["--software-deployment-method=apptainer"], ["--use-singularity"]])
def test_asking_snakemake_for_conda_or_apptainer_is_refused(wf: Path, args: list[str]) -> None:
    with pytest.raises(BadInput) as e:
        plan(str(wf), None, None, None, [], [], False, args)
    assert "which this cluster does not have" in e.value.what and "--requirements FILE" in e.value.fix
    assert "--sdm env-modules" in e.value.fix


@pytest.mark.parametrize("line", ["use-conda: true", "software-deployment-method: [env-modules, conda]",
                                  "sdm: apptainer", "use_conda: yes"])
def test_a_profile_asking_for_conda_or_apptainer_is_refused(wf: Path, line: str) -> None:
    (wf / "profiles/slurm").mkdir(parents=True)
    (wf / "profiles/slurm/config.yaml").write_text(f"executor: slurm\n{line}\n")
    with pytest.raises(BadInput) as e:
        plan(str(wf), None, None, None, [], [], False, [])
    assert line.split(":")[0].replace("_", "-") in e.value.what


@pytest.mark.parametrize("args, line", [(["--use-envmodules"], ""), (["--sdm", "env-modules", "-j", "2"], ""),
                                        (["--sdm=env-modules"], ""), ([], "software-deployment-method: env-modules"),
                                        ([], "use-envmodules: true")])
def test_environment_modules_are_there_to_ask_for(wf: Path, args: list[str], line: str) -> None:
    (wf / "profiles/slurm").mkdir(parents=True)
    (wf / "profiles/slurm/config.yaml").write_text(f"executor: slurm\n{line}\n")
    p = plan(str(wf), None, None, None, [], [], False, args)
    assert set(deployment(p.profile, p.snakemake_args)) == {"env-modules"}


def test_rules_with_envmodules_are_named_when_snakemake_is_not_asked_to_load_them() -> None:
    compiled = ("@workflow.rule(name='pi', lineno=1, snakefile='S')\n@workflow.envmodules(\"mpi-demo\")\n"
                "@workflow.shellcmd('mpi-pi')\n")
    env = pyenv.Env("the cluster's own", "/opt/minihpc/venv", "no requirements")
    said = deployment_notices(compiled, env, modules=False)
    assert len(said) == 1 and "rule(s) pi declare envmodules:" in said[0] and "--sdm env-modules" in said[0], said
    assert deployment_notices(compiled, env, modules=True) == []

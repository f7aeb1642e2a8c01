"""The Action's run step (.ci/action run) as a hostile caller would drive it:
its inputs reach `minihpc run` as arguments, never as shell."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Stands in for the installed minihpc: records its arguments.
FAKE = """#!/usr/bin/env python3
import json, os, sys
open(os.environ["ARGV_LOG"], "w").write(json.dumps(sys.argv[1:]))
"""


def test_inputs_are_arguments_not_shell(tmp_path: Path) -> None:
    bin_dir, temp, ws = tmp_path / "bin", tmp_path / "temp", tmp_path / "ws"
    for d in (bin_dir, temp, ws):
        d.mkdir()
    (bin_dir / "minihpc").write_text(FAKE)
    (bin_dir / "minihpc").chmod(0o755)
    pwned = tmp_path / "pwned"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(ws),
           "GITHUB_OUTPUT": str(tmp_path / "out"), "ARGV_LOG": str(tmp_path / "argv"),
           "INPUT_WORKFLOW": f"wf; touch {pwned}",
           "INPUT_ARGS": f"--config 'x=$(touch {pwned})' `touch {pwned}` --keep-going",
           "INPUT_FETCH": f"results/*.txt\n$(touch {pwned})",
           "INPUT_PROFILE": "", "INPUT_REQUIREMENTS": f"req.txt; touch {pwned}",
           "INPUT_PIP": f"numpy>=2\n$(touch {pwned})"}
    r = subprocess.run(["bash", str(ROOT / ".ci/action"), "run"], env=env, capture_output=True, text=True,
                       check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert not pwned.exists(), "an input was run as shell"
    argv = json.loads((tmp_path / "argv").read_text())
    assert argv == ["run", f"{ws}/wf; touch {pwned}", "--report", f"{temp}/minihpc-report",
                    "--fetch", "results/*.txt", "--fetch", f"$(touch {pwned})",
                    "--requirements", f"{ws}/req.txt; touch {pwned}", "--pip", "numpy>=2", "--pip", f"$(touch {pwned})",
                    "--", "--config", f"x=$(touch {pwned})", "`touch", f"{pwned}`", "--keep-going"]
    assert (tmp_path / "out").read_text() == f"report-dir={temp}/minihpc-report\nexit-code=0\n"


def _step(tmp_path: Path, verb: str, **inputs: str) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
    """`.ci/action VERB` with these INPUT_*s and a stand-in minihpc: its result and minihpc's argv (None: not run)."""
    bin_dir, temp, ws = tmp_path / "bin", tmp_path / "temp", tmp_path / "ws"
    for d in (bin_dir, temp, ws):
        d.mkdir(exist_ok=True)
    (bin_dir / "minihpc").write_text(FAKE)
    (bin_dir / "minihpc").chmod(0o755)
    argv = tmp_path / "argv"
    argv.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(ws),
           "GITHUB_OUTPUT": str(tmp_path / "out"), "ARGV_LOG": str(argv),
           **{f"INPUT_{k.upper()}": v for k, v in inputs.items()}}
    r = subprocess.run(["bash", str(ROOT / ".ci/action"), verb], env=env, capture_output=True, text=True,
                       check=False, stdin=subprocess.DEVNULL)
    return r, json.loads(argv.read_text()) if argv.exists() else None


def test_prove_true_runs_minihpc_prove_with_the_same_arguments(tmp_path: Path) -> None:
    r, argv = _step(tmp_path, "run", workflow="wf", prove="true", args="--config n=3", pip="ujson")
    assert r.returncode == 0, r.stderr
    assert argv == ["prove", f"{tmp_path}/ws/wf", "--report", f"{tmp_path}/temp/minihpc-report", "--pip", "ujson",
                    "--", "--config", "n=3"]
    r, argv = _step(tmp_path, "run", workflow="wf", prove="true", faults="eio,node-kill; touch x")
    assert r.returncode == 0, r.stderr
    assert argv == ["prove", f"{tmp_path}/ws/wf", "--report", f"{tmp_path}/temp/minihpc-report", "--faults",
                    "eio,node-kill; touch x", "--"]


def test_a_bad_prove_input_is_refused_before_the_cluster_comes_up(tmp_path: Path) -> None:
    for inputs, said in (({"prove": "yes"}, "prove: 'yes' is not true or false; give prove: true or leave it out"),
                         ({"prove": "true", "fetch": "results/*.txt"}, "fetch is not an input of prove"),
                         ({"faults": "eio"}, "faults is an input of prove only")):
        for verb in ("up", "run"):
            r, argv = _step(tmp_path, verb, **inputs)
            assert r.returncode == 2 and said in r.stderr, (verb, inputs, r.stderr)
            assert argv is None, f"{verb}: minihpc was run: {argv}"

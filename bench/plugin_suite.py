#!/usr/bin/env python3
"""The SLURM plugin's own integration suite (its tests/tests.py) against
this cluster, as the lab user on the login node, with the cluster enforcing
what `--enforce` says (`minihpc up --enforce ...` first, on the running cluster).

The suite is the one of the plugin version the cluster runs, from its sdist
on PyPI (downloaded here, copied to /shared; nothing of it is kept in the
project). Its test workflows ask for 1 to 5 MB of memory, which an enforcing
site kills; the plugin's own CI cluster enforces no memory. Each run writes
bench/results/plugin.json and .md (plugin-none.json
with --enforce none): every test's outcome,
and each failure's first lines.

  python -m bench.plugin_suite --enforce none
  python -m bench.plugin_suite --enforce memory,time
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.report import listed, save, table
from minihpc.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "snakemake-executor-plugin-slurm"
DIR = "/shared/plugin-suite"
SUITE_LIMIT_S = 3600


def plugin_version(c: Cluster) -> str:
    r = c.sh(f"python3 -c 'import importlib.metadata as m; print(m.version(\"{PLUGIN}\"))'")
    assert r.rc == 0, r.out
    return r.out.split()[-1]


def suite_tar(version: str) -> bytes:
    """The sdist's tests/ directory, as a tar to unpack on /shared."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", d,
                        f"{PLUGIN}=={version}"], check=True)
        (sdist,) = Path(d).glob("*.tar.gz")
        out = io.BytesIO()
        with tarfile.open(sdist) as src, tarfile.open(fileobj=out, mode="w") as dst:
            for m in src.getmembers():
                parts = m.name.split("/", 1)
                if len(parts) == 2 and parts[1].startswith("tests/") and (m.isfile() or m.isdir()):
                    f = src.extractfile(m) if m.isfile() else None
                    m.name = parts[1]
                    dst.addfile(m, f)
        return out.getvalue()


def outcomes(junit: str) -> list[dict]:
    cases = []
    for case in ET.fromstring(junit).iter("testcase"):
        bad = next((e for e in case if e.tag in ("failure", "error")), None)
        skipped = next((e for e in case if e.tag == "skipped"), None)
        cases.append({"test": f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}",
                      "seconds": round(float(case.get("time", 0)), 1),
                      "outcome": bad.tag if bad is not None else "skipped" if skipped is not None else "passed",
                      "said": ((bad.get("message") or "") + "\n" + (bad.text or ""))[:1500] if bad is not None
                      else ""})
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--enforce", default="memory,time",
                    help="what the cluster enforces for the run (minihpc up --enforce; default memory,time)")
    a = ap.parse_args()
    subprocess.run([sys.executable, "-m", "minihpc", "up", "--enforce", a.enforce], cwd=ROOT, check=True)
    c = Cluster.local()
    version = plugin_version(c)
    r = c.sh(f"rm -rf {DIR} && mkdir -p {DIR} && tar -x -C {DIR}", stdin=suite_tar(version))
    assert r.rc == 0, r.out
    t = time.monotonic()
    run = c.sh("python3 -m pytest -p no:cacheprovider -q -rfE --basetemp tmp --junitxml suite.xml tests/tests.py",
               workdir=DIR, timeout=SUITE_LIMIT_S)
    took = time.monotonic() - t
    cases = outcomes(c.sh(f"cat {DIR}/suite.xml").out)
    counts = {k: sum(1 for x in cases if x["outcome"] == k) for k in ("passed", "failure", "error", "skipped")}
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "plugin": version,
              "slurm": c.facts.slurm, "enforce": a.enforce, "seconds": round(took), "exit": run.rc,
              "counts": counts, "summary": run.out.strip().splitlines()[-1] if run.out.strip() else "",
              "tests": cases}
    # The cluster's own enforcement: plugin.json; another: plugin-<what it enforced>.json.
    save("plugin" if a.enforce == "memory,time" else f"plugin-{a.enforce.replace(',', '-')}", result, markdown)
    return 0


def markdown(result: dict) -> str:
    failed = [x for x in result["tests"] if x["outcome"] in ("failure", "error")]
    n = result["counts"]
    return "\n".join([
        f"# The SLURM plugin's own suite, enforcing {result['enforce']}", "",
        f"snakemake-executor-plugin-slurm {result['plugin']}'s tests/tests.py (from its sdist) on minihpc "
        f"(Slurm {result['slurm']}, `minihpc up --enforce {result['enforce']}`), as the lab user on the login node, "
        f"measured by `python -m bench.plugin_suite --enforce {result['enforce']}` at {result['when']}: "
        f"{n['passed']} passed, {n['failure']} failed, {n['error']} errors, {n['skipped']} skipped of "
        f"{len(result['tests'])}, in {result['seconds']} s (pytest: `{result['summary']}`).", "",
        *(table(("failed test", "s", "what it said (first line)"),
                ((x["test"], x["seconds"], x["said"].strip().splitlines()[0][:200].replace("|", "\\|")
                  if x["said"].strip() else "") for x in failed)) if failed else ["Every test passed."]),
        "", f"Seconds per test: {listed(x['seconds'] for x in result['tests'])}.",
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""Each benchmark's figures as Markdown beside its JSON.

Every benchmark writes bench/results/<name>.json and, rendered from that same
dict by its module's `markdown(result)`, bench/results/<name>.md (the docs
site shows them under results/). The helpers here are what those renderers
share. Regenerating the .md from the JSON already there runs no benchmark:

  python -m bench.report [NAME ...]   rewrite NAME.md from NAME.json (no NAME: every result)
  python -m bench.report --check      exit 1 if any .md is not what its JSON renders to
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType

from minihpc import BENCH_RESULTS
from minihpc.commands.bench import SCRIPTS


def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def heading(title: str, bench: str, result: dict, what: str, args: str = "", name: str = "") -> list[str]:
    """The page's title, what was measured, and the command and date that measured it
    (`args`: the script's own, for a result saved under another `name` than the bench's)."""
    run = f"`python -m bench.{SCRIPTS[bench]}{' ' + args if args else ''}`"
    how = f"`make bench BENCH={bench}` ({run})" if not args else run
    return [f"# {title}", "", what, "",
            f"Measured by {how} at {result['when']}; every figure below is from "
            f"[{name or bench}.json]({name or bench}.json).", ""]


def listed(samples: Iterable[object]) -> str:
    return ", ".join(str(s) for s in samples)


def against(value: float, target: float, *, most: bool = False, unit: str = "") -> str:
    """The target and whether the value meets it (at least it, or with most=True at most it)."""
    ok = value <= target if most else value >= target
    return f"{'≤' if most else '≥'} {target}{unit} {'met' if ok else 'not met'}"


def module(name: str) -> ModuleType:
    """The bench module that wrote bench/results/<name>.json (BENCH-VARIANT, e.g. suite-after or
    cluster-22.05: BENCH's)."""
    return importlib.import_module(f"bench.{SCRIPTS[name.split('-')[0]]}")


def render(name: str, results: Path = BENCH_RESULTS) -> str:
    """NAME.md as NAME.json renders to now."""
    return module(name).markdown(json.loads((results / f"{name}.json").read_text()))


def save(name: str, result: dict, markdown: Callable[[dict], str], indent: int = 1) -> None:
    """Write bench/results/<name>.json and the .md rendered from it; show the .md."""
    BENCH_RESULTS.mkdir(parents=True, exist_ok=True)
    (BENCH_RESULTS / f"{name}.json").write_text(json.dumps(result, indent=indent) + "\n")
    md = markdown(result)
    (BENCH_RESULTS / f"{name}.md").write_text(md)
    print(md, end="")
    print(f"wrote {BENCH_RESULTS / name}.json and .md")


def names(results: Path = BENCH_RESULTS) -> list[str]:
    """Every result there is a renderer for."""
    return sorted(p.stem for p in results.glob("*.json") if p.stem.split("-")[0] in SCRIPTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help="results to render (default: every one), "
                                                              "e.g. cluster, nfs, suite-after")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if an .md differs from its JSON")
    a = ap.parse_args(argv)
    known = names()
    unknown = [n for n in a.names if n not in known]
    if unknown:
        print(f"report: no {', '.join(unknown)} in {BENCH_RESULTS}; there are: {', '.join(known)}", file=sys.stderr)
        return 2
    stale = []
    for name in a.names or known:
        md, path = render(name), BENCH_RESULTS / f"{name}.md"
        if a.check:
            if not path.exists() or path.read_text() != md:
                stale.append(name)
        else:
            path.write_text(md)
            print(f"wrote {path}")
    if stale:
        print(f"report: {', '.join(stale)}.md not what the JSON renders to: python -m bench.report "
              f"{' '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

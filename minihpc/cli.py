"""The minihpc command line: verbs that say what they do, `--help` on each,
everything validated before anything starts, errors printed once as
`minihpc: error: what; fix` (exit 2 for bad input, 1 otherwise)."""

from __future__ import annotations

import argparse
import sys

from minihpc import __version__, check_name, commands
from minihpc.errors import BAD_INPUT, MinihpcError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: exit 2, one line
        self.print_usage(sys.stderr)
        print(f"minihpc: error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(BAD_INPUT)


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="minihpc", description="A real SLURM cluster in containers, to test Snakemake "
                                             "workflows on before a real cluster sees them.")
    ap.add_argument("--version", action="version", version=f"minihpc {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for module in commands.VERBS:
        module.add(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # What follows `--` is the tool's (Snakemake's), never ours.
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser().parse_args(argv[:len(argv) - len(rest) - (1 if "--" in argv else 0)])
    if rest and not hasattr(args, "passthrough"):
        print(f"minihpc: error: {args.command} takes no arguments after --; see minihpc {args.command} --help",
              file=sys.stderr)
        return BAD_INPUT
    if hasattr(args, "passthrough"):
        args.passthrough = rest
    try:
        check_name()
        return args.run(args)
    except MinihpcError as e:
        print(f"minihpc: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("minihpc: interrupted", file=sys.stderr)
        return 130

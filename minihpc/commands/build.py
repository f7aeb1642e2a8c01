"""minihpc build: a Slurm release's images, built ahead of `up` (a class
room's machines before the class, a CI job before its matrix)."""

from __future__ import annotations

import argparse
import os

from minihpc import bringup, releases
from minihpc.commands.up import add_stack_flags, given


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a Slurm release's images (and a Snakemake stack's) without starting "
                                     "anything",
                       description="Build (or find, if their inputs are unchanged) the images of a Slurm release and "
                                   "Snakemake stack, so that minihpc up --slurm RELEASE [--snakemake VERSION] starts "
                                   "at once. Starts, stops and changes no cluster.")
    p.add_argument("--slurm", metavar="RELEASE", default=None,
                   help=f"the release: {', '.join(releases.RELEASES)} (default {releases.DEFAULT}; env "
                        "SLURM_RELEASE)")
    add_stack_flags(p)
    p.set_defaults(run=build)


def build(a: argparse.Namespace) -> int:
    release = releases.named(a.slurm if a.slurm is not None else os.environ.get("SLURM_RELEASE", ""))
    bringup.build(release, bringup.stack_asked(given(a, dict(os.environ)), release))
    return 0

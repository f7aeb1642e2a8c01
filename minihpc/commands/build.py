"""minihpc build: a Slurm release's images, built ahead of `up` (a class
room's machines before the class, a CI job before its matrix)."""

from __future__ import annotations

import argparse
import os

from minihpc import bringup, releases


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a Slurm release's images without starting anything",
                       description="Build (or find, if their inputs are unchanged) the images of a Slurm release, so "
                                   "that minihpc up --slurm RELEASE starts at once. Starts, stops and changes no "
                                   "cluster.")
    p.add_argument("--slurm", metavar="RELEASE", default=None,
                   help=f"the release: {', '.join(releases.RELEASES)} (default {releases.DEFAULT}; env "
                        "SLURM_RELEASE)")
    p.set_defaults(run=build)


def build(a: argparse.Namespace) -> int:
    bringup.build(releases.named(a.slurm if a.slurm is not None else os.environ.get("SLURM_RELEASE", "")))
    return 0

"""site, ssh: a SLURM site reached over SSH as an ordinary user (minihpc.sitefile,
minihpc.sitecheck), and this machine's minihpc as one."""

from __future__ import annotations

import argparse
import os

# The proofs `site check` runs, in order (minihpc.sitecheck), for --help and validation without importing it.
PROOF_NAMES = ("core1", "core2", "core4", "core5", "lag", "staging", "limits")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("site", help="prove a workflow's policy on a real SLURM site over SSH",
                       description="A site file (YAML) says how to reach a SLURM site's login node over SSH and "
                                   "what to use there: see docs/site-check.md.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    check = verbs.add_parser("check", help="run the proofs that make sense on a site, over SSH only",
                             description="Check the site file, connect, then run the proofs as the site's "
                                         "user: a pass/fail table and proofs in .proof/site/. Jobs are short "
                                         "and small; every one is cancelled and the work directory removed on "
                                         "exit or Ctrl-C.")
    check.add_argument("site", metavar="SITE", help="the site file")
    check.add_argument("--only", action="append", default=[], metavar="PROOF",
                       help=f"run only these proofs (repeatable): {', '.join(PROOF_NAMES)}")
    check.set_defaults(run=site_check)
    local = verbs.add_parser("local", help="write a site file for this machine's minihpc (its sshd on 127.0.0.1)")
    local.set_defaults(run=site_local)

    p = sub.add_parser("ssh", help="an SSH session on the login node as the lab user (through its sshd)",
                       description="ssh -p SSH_PORT LAB_USER@127.0.0.1 with this cluster's key and host key; "
                                   "arguments after -- are the remote command.")
    p.set_defaults(run=ssh, passthrough=[])


def site_local(a: argparse.Namespace) -> int:
    from minihpc import RUN_DIR
    from minihpc.facts import Facts
    from minihpc.sitefile import write_local
    print(write_local(Facts.read(RUN_DIR), RUN_DIR))
    return 0


def site_check(a: argparse.Namespace) -> int:
    from minihpc.errors import BadInput
    from minihpc.sitecheck import check
    from minihpc.sitefile import load
    for name in a.only:
        if name not in PROOF_NAMES:
            raise BadInput(f"--only {name!r} is not a proof", f"choose from {', '.join(PROOF_NAMES)}")
    site = load(a.site)
    if "staging" in a.only and not site.scratch:
        raise BadInput(f"--only staging, but {a.site} gives no scratch", "set scratch to the compute nodes' local "
                       "scratch directory")
    return check(site, a.only)


def ssh(a: argparse.Namespace) -> int:
    from minihpc import RUN_DIR
    from minihpc.facts import Facts
    from minihpc.sitefile import load, write_local
    from minihpc.transport import SshTransport
    site = load(write_local(Facts.read(RUN_DIR), RUN_DIR))
    argv = SshTransport(site, "login").ssh(interactive=True)
    os.execvp(argv[0], [*argv, *a.passthrough])
    return 0

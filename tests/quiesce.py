"""Between make test's two cluster phases (tests/run-suite.sh): what the
tests run side by side may leave behind (a job of a test that failed half
way, a fault, an NFS profile) must not fail the tests that then run alone.
Cancels every job still queued, saying whose, waits for the queue to empty,
clears faults on the shared mount and sets its profile back to `off`.
Exits non-zero if the cluster does not come back to that state."""

from __future__ import annotations

import sys
import time

from minihpc.cluster import Cluster  # run-suite.sh runs this with the checkout on PYTHONPATH

WAIT_S = 180


def main() -> int:
    c = Cluster.local()
    left = c.root("squeue -h -o '%i %u %T %j %Z'").out.strip()
    if left:
        print(f"quiesce: cancelling what the shared phase left queued:\n{left}")
        c.root("scancel --full $(squeue -h -o %i)")
    deadline = time.monotonic() + WAIT_S
    while c.root("squeue -h -o %i").out.strip():
        if time.monotonic() > deadline:
            print(f"quiesce: jobs still queued after {WAIT_S} s:\n{c.root('squeue').out}", file=sys.stderr)
            return 1
        time.sleep(2)
    c.set_nfs_profile("off")
    return 0


if __name__ == "__main__":
    sys.exit(main())

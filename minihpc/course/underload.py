"""The course's proofs on a busy cluster: run them while another user's
higher-priority load (minihpc.busy) holds every CPU but one, and prove the
load was there: its tasks ran throughout, and the lab user's jobs pended
meanwhile (reasons sampled from squeue every 2 s).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from minihpc import busy
from minihpc.cluster import Cluster
from minihpc.proofs import Proof

# Longer than any core; the load is stopped as soon as they are done.
MINUTES = 60
SAMPLE_S = 2


def under_load(client: Cluster, work: Callable[[], None]) -> Proof:
    """Run `work` under the load on the cluster `client` reaches; the checks that the load was real."""
    c = Proof("busy")
    load = busy.start(client, MINUTES)
    reasons: Counter[str] = Counter()
    held: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            r = client.sh("squeue --me -h -t PD -o %r", timeout=60)
            reasons.update(line.strip() for line in r.out.splitlines() if line.strip())
            held.append(sum(1 for t in busy.running(client) if t["State"] == "RUNNING"))
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        # The load holds its CPUs before the first core submits anything.
        for _ in range(60):
            if sum(1 for t in busy.running(client) if t["State"] == "RUNNING") == load.cpus:
                break
            done.wait(1)
        sampler.start()
        work()
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join(timeout=120)
        stopped = busy.stop(client)
    f = client.facts
    c.check(f"{f.other_user}'s load held {load.cpus} of the cluster's CPUs in most samples",
            Counter(held).most_common(1) == [(load.cpus, max(Counter(held).values(), default=0))],
            f"running tasks per sample: {dict(Counter(held))}")
    c.check("...and was still queued when the proofs were done", stopped > 0, f"{stopped} task(s) cancelled")
    c.check("the lab user's jobs pended meanwhile (for Resources or Priority)",
            reasons["Resources"] + reasons["Priority"] > 0, f"pending reasons sampled: {dict(reasons)}")
    return c

"""The shared filesystem's lag, measured rather than assumed: a job on a
compute node writes a file whose name the login node has never looked up,
and the login node polls for it every 0.1 s. The lag is when the login node
saw it minus when the job wrote it (on one cluster the clocks agree: NTP on a
site, one kernel here). Read by the site check and by `minihpc prove`'s
slow-filesystem fault, whose audit sets `latency-wait` against it."""

from __future__ import annotations

import math
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from minihpc.cluster import Cluster

JOB_NAME = "minihpc-lag"
POLL = ("import os, sys, time\nt = time.time()\n"
        "while not os.path.exists(sys.argv[1]) and time.time() - t < float(sys.argv[2]): time.sleep(0.1)\n"
        "print(time.time() if os.path.exists(sys.argv[1]) else 'never')")


@dataclass
class Lag:
    samples: list[float] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Samples whose file never showed on the login node."""
        return sum(math.isnan(x) for x in self.samples)

    @property
    def worst(self) -> float:
        """The largest lag that was seen (NaN if none was)."""
        seen = [x for x in self.samples if not math.isnan(x)]
        return max(seen) if seen else math.nan

    @property
    def latency_wait(self) -> int | None:
        """The --latency-wait that covers the worst lag twice over, plus 5 s
        (Snakemake's own default is the floor)."""
        return None if math.isnan(self.worst) else max(5, math.ceil(self.worst * 2 + 5))


def measure(c: Cluster, options: list[str], samples: int, name: str = JOB_NAME, wait_s: int = 600,
            stop: Callable[[], bool] = lambda: False, under: str | None = None) -> Lag:
    """`samples` jobs (sbatch `options` and one task each), one after
    another until `stop()`; each one's lag, or NaN if its file did not show
    within `wait_s`. The files are written in `under` (made if need be; the
    shared filesystem's top by default)."""
    lag = Lag()
    where = under or c.facts.shared
    if under:
        c.sh(f"mkdir -p {shlex.quote(under)}")
    for i in range(samples):
        if stop():
            break
        path = f"{where}/lag-{i}-{uuid.uuid4().hex[:8]}"
        # The name is decided here and the file written at the job's start.
        q = shlex.quote(path)
        # Working where its file is: a probe is told by its directory (prove's: its run's), not only its name.
        job = c.submit(f"python3 -c 'import time; print(time.time())' > {q}.w && mv {q}.w {q}",
                       [*options, "--nodes=1", "--ntasks=1"], name, chdir=where)
        seen = c.sh(f"python3 -c {shlex.quote(POLL)} {shlex.quote(path)} {wait_s}", timeout=wait_s + 100)
        end = c.ended(job, min(300, wait_s + 60))
        wrote = c.sh(f"cat {shlex.quote(path)}; rm -f {shlex.quote(path)}").out.strip()
        try:
            sample = float(seen.out.strip().splitlines()[-1]) - float(wrote.splitlines()[0])
        except (ValueError, IndexError):
            sample = math.nan
        lag.samples.append(sample)
        lag.evidence.append(f"job {job} on {end['NodeList']}: wrote at {wrote[:20]}, login saw it at "
                            f"{seen.out.strip()[-20:]}: lag {sample:.2f} s")
    return lag

#!/usr/bin/env python3
"""mpi-pi: the site's MPI scaling demo (module mpi-demo). Each of N ranks
integrates its share of 4/(1+x^2) over [0, 1] (INTERVALS strips, dealt
round-robin) and rank 0 prints one JSON line: the ranks, which node each ran
on, pi and its error, and the time the sum took. Run it with srun
(--mpi=pmix) or mpiexec inside an allocation; more ranks, less time each.

    mpi-pi [INTERVALS]        (default 5000000)
"""

from __future__ import annotations

import json
import math
import socket
import sys
import time

from mpi4py import MPI


def main(argv: list[str]) -> int:
    try:
        intervals = int(argv[1]) if len(argv) > 1 else 5_000_000
        if intervals < 1:
            raise ValueError
    except ValueError:
        print(f"mpi-pi: INTERVALS must be a positive whole number, not {argv[1]!r}", file=sys.stderr)
        return 2
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    comm.Barrier()
    start = MPI.Wtime()
    width = 1.0 / intervals
    part = 0.0
    for i in range(rank, intervals, size):
        x = (i + 0.5) * width
        part += 4.0 / (1.0 + x * x)
    pi = comm.reduce(part * width, op=MPI.SUM, root=0)
    seconds = MPI.Wtime() - start
    hosts = comm.gather(socket.gethostname(), root=0)
    slowest = comm.reduce(seconds, op=MPI.MAX, root=0)
    if rank == 0:
        print(json.dumps({"ranks": size, "nodes": sorted(set(hosts)), "rank_nodes": hosts,
                          "intervals": intervals, "pi": pi, "error": abs(pi - math.pi),
                          "seconds": round(slowest, 4), "mpi": MPI.Get_library_version().splitlines()[0].rstrip("\0"),
                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Uses MB MiB of memory for S seconds, then writes its output (Core 6).

Run under a rule whose mem_mb grows with the attempt: too little on attempt 1
(Slurm kills the step: "Exceeded job memory limit"), enough on attempt 2.
"""

import sys
import time
from pathlib import Path

out, mb, seconds, attempt, mem_mb = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
block = bytearray(mb * 2**20)
block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
print(f"attempt {attempt}: holding {mb} MiB under mem_mb={mem_mb}", flush=True)
time.sleep(seconds)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(f"attempt={attempt} mem_mb={mem_mb} held={mb}MiB\n")

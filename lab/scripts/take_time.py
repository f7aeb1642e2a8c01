"""Works for S seconds, then writes its output (Core 6).

Run under a rule whose runtime (minutes) grows with the attempt: 1 minute on
attempt 1 (Slurm ends the job: TIMEOUT), enough on attempt 2.
"""

import sys
import time
from pathlib import Path

out, seconds, attempt, runtime = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"attempt {attempt}: working {seconds} s under runtime={runtime} min", flush=True)
time.sleep(seconds)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(f"attempt={attempt} runtime={runtime}min worked={seconds}s\n")

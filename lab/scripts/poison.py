"""Writes a plausible partial output in place, then crashes (Core 2, Repro B).

mode "crash" (default) is the incident; "hang" writes PARTIAL and then waits,
so the run can be interrupted mid-job; "fixed" is the repaired job that a
--rerun-incomplete run uses to replace the poison output.
"""

import sys
import time
from pathlib import Path

out = Path(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "crash"
out.parent.mkdir(parents=True, exist_ok=True)
if mode == "fixed":
    out.write_text("COMPLETE\n")
    sys.exit(0)
out.write_text("PARTIAL\n")
if mode == "hang":
    print("Wrote PARTIAL, now hanging until killed.", file=sys.stderr, flush=True)
    time.sleep(3600)
print("Wrote PARTIAL then crashing.", file=sys.stderr)
sys.exit(13)

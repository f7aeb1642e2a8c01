"""Fails on attempt 1, succeeds on later attempts (module Core 2, Repro A).

The attempt number comes from the rule's resources (`{resources.attempt}`),
not from an environment variable: Snakemake sets none (ERRATA 1).
"""

import sys
from pathlib import Path

out = Path(sys.argv[1])
attempt = int(sys.argv[2])
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(f"attempt={attempt}\n")
if attempt == 1:
    print("Failing on attempt 1 (intentional).", file=sys.stderr)
    sys.exit(42)
print("Succeeded on attempt >=2.", file=sys.stderr)

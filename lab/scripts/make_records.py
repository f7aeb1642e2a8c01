"""Core 3 staging's input: N deterministic text records, one per line."""

import hashlib
import sys
from pathlib import Path

out, n = Path(sys.argv[1]), int(sys.argv[2])
out.parent.mkdir(parents=True, exist_ok=True)
with out.open("w") as fh:
    for i in range(n):
        fh.write(f"{hashlib.sha256(str(i).encode()).hexdigest()[:32]}\t{i}\n")

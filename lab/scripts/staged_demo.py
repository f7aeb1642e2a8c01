"""The staging demo's job (Core 3): a small, deterministic output."""

import sys
from pathlib import Path

out = Path(sys.argv[1])
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("staged_demo=ok\n")

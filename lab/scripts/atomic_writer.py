"""Publishes its output atomically (Core 2, Repro C): write a temporary file,
then rename it over the final name on the same filesystem.

--fail-before-rename crashes after writing the temporary file, to show that
the final output never appears.
"""

import sys
from pathlib import Path

final = Path(sys.argv[1])
tmp = final.with_suffix(final.suffix + ".tmp")
final.parent.mkdir(parents=True, exist_ok=True)
tmp.write_text("COMPLETE\n")
if "--fail-before-rename" in sys.argv[2:]:
    print("Crashing before the atomic rename (intentional).", file=sys.stderr)
    sys.exit(17)
tmp.replace(final)  # atomic rename on the same filesystem

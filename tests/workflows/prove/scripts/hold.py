"""hold.py MB SECONDS: hold MB MiB of memory, every page written, for SECONDS; say so."""

import sys
import time

mb, seconds = int(sys.argv[1]), float(sys.argv[2])
held = b"x" * (mb << 20)  # written, so the pages are really used (a zeroed buffer may not be)
time.sleep(seconds)
print(f"held {len(held) >> 20} MiB for {seconds:g} s")

"""A --compare command for minihpc prove (tests/cluster/test_prove.py):
results/stamp.txt differs every run, and means the same when both files
hold one epoch timestamp.

    python3 scripts/same_stamp.py REFERENCE POLICY
"""

import re
import sys

bad = [path for path in sys.argv[1:3] if not re.fullmatch(r"\d+\.\d+\n", open(path).read())]
if bad:
    sys.exit(f"not one epoch timestamp: {', '.join(bad)}")

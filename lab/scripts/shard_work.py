"""Core 3 staging's small-file-heavy job: split, sort and merge through
thousands of temporary shard files kept next to the output, as `sort -T` or
`samtools sort -T` do. Staged, the output path (and so the shards) is on the
node's scratch; direct, every shard is a round trip to the shared filesystem.

    shard_work.py INPUT OUTPUT SHARDS HOLD

After the output is written the job holds on its node for up to HOLD
seconds, so that its scratch can be inspected while it runs; whoever
inspects it ends the hold early by creating OUTPUT.release, which the job
removes before it ends.
"""

import hashlib
import shutil
import sys
import time
from pathlib import Path

src, out, shards, hold = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
work = out.with_name(out.name + ".shards")
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)
print(f"shard_work: {shards} shards in {work.resolve()}", flush=True)

records = src.read_text().splitlines()
for i in range(shards):  # split: one small file per shard
    (work / f"{i:05d}.txt").write_text("".join(r + "\n" for r in records[i::shards]))
for i in range(shards):  # sort each shard into a new file, drop the unsorted one
    part = work / f"{i:05d}.txt"
    (work / f"{i:05d}.sorted").write_text("".join(sorted(part.read_text().splitlines(keepends=True))))
    part.unlink()
digest, counts = hashlib.sha256(), []
for i in range(shards):  # merge: read every sorted shard back
    sorted_part = work / f"{i:05d}.sorted"
    data = sorted_part.read_bytes()
    digest.update(data)
    counts.append(data.count(b"\n"))
    sorted_part.unlink()
work.rmdir()
out.write_text(f"records={sum(counts)} shards={shards} sha256={digest.hexdigest()}\n")
if hold:
    release = out.with_name(out.name + ".release")
    print(f"shard_work: output written to {out.resolve()}; holding {hold:g} s or until {release.name} appears",
          flush=True)
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not release.exists():
        time.sleep(0.5)
    release.unlink(missing_ok=True)

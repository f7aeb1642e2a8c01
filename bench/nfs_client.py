#!/usr/bin/env python3
"""Benchmark the NFS-style client on this host (one backing dir, nodes A and B).

1. Profile off, client against the raw backing directory: create and stat
   rates (ops/s), sequential write and read throughput (MB/s); medians of REPS
   runs, raw and client taken in turn. Targets: metadata >= 20 % of raw,
   sequential >= 30 % of raw.
2. A round-trip profile (rtt-5ms: no caching, 5 ms per server round trip): a
   small-file job (create, stat, read back FILES files) on A. Its slowdown
   against profile off should equal round trip x server operations (the
   client's own counters) within 20 %.

3. One noisy neighbour: on node A, one unprivileged user floods the client
   (20,000 files and a find, twenty open listings of 50,000 names, 1,500
   nested long names, a big write with fsync) while a second user's
   create/stat/unlink latency is measured; its median under each flood
   against idle. Target: within 5x idle, and nothing fails.

Also, for what a create is made of: the microseconds one request of each kind
a create sends takes from the caller's side, raw and through the client.

Writes bench/results/nfs.json and nfs.md (its tables; python -m bench.report
nfs renders them again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.report import against, heading, listed, save, table
from minihpc import BENCH_RESULTS
from nfs.client import WORKERS
from nfs.localmount import QUIET_USER, local_cluster
from nfs.profiles import named

ROOT = Path(__file__).resolve().parent.parent

RESULTS = BENCH_RESULTS / "nfs.json"
CHUNK = 1 << 20


def seq_write(d: Path, mb: int) -> float:
    # A new file each time: nothing is freed while the benchmark runs.
    buf = os.urandom(CHUNK)
    t = time.perf_counter()
    with open(d / f"seq{time.monotonic_ns()}.bin", "wb") as f:
        for _ in range(mb):
            f.write(buf)
        f.flush()
        os.fsync(f.fileno())
    return mb / (time.perf_counter() - t)


def seq_read(d: Path, mb: int) -> float:
    t = time.perf_counter()
    with open(max(d.glob("seq*.bin")), "rb", buffering=0) as f:
        while f.read(CHUNK):
            pass
    return mb / (time.perf_counter() - t)


def creates(d: Path, n: int) -> float:
    sub = d / f"c{time.monotonic_ns()}"
    sub.mkdir()
    t = time.perf_counter()
    for i in range(n):
        with open(sub / f"f{i}", "wb") as f:
            f.write(b"x" * 100)
    return n / (time.perf_counter() - t)


def stats(d: Path, n: int) -> float:
    sub = d / "s"
    if not sub.exists():
        sub.mkdir()
        for i in range(n):
            (sub / f"f{i}").write_bytes(b"x")
    names = [sub / f"f{i}" for i in range(n)]
    t = time.perf_counter()
    for p in names:
        os.stat(p)
    return n / (time.perf_counter() - t)


# Single requests as a create sends them (see docs/nfs.md: six or seven per
# `open(..., "wb")`, write, close), each timed from the caller: what it does
# on the file, and the requests the client gets for it.
ROUND_TRIPS = {
    "isatty": ("`isatty` (IOCTL, answered by the reading thread)", lambda fd: os.isatty(fd)),
    "close": ("`close` of a second descriptor (FLUSH, answered by the reading thread when no lock is held)",
              lambda fd: os.close(os.dup(fd))),
    "pwrite": ("1-byte `pwrite` (WRITE)", lambda fd: os.pwrite(fd, b"x", 0)),
    "pwrite_fstat": ("1-byte `pwrite`, then `fstat` (WRITE, GETATTR)",
                     lambda fd: (os.pwrite(fd, b"x", 0), os.fstat(fd))),
}


def round_trip(d: Path, kind: str, n: int = 2000) -> float:
    """Microseconds a call of `kind` (ROUND_TRIPS) takes on a file in `d`."""
    fd = os.open(d / "round-trip", os.O_CREAT | os.O_RDWR, 0o644)
    call = ROUND_TRIPS[kind][1]
    try:
        t = time.perf_counter()
        for _ in range(n):
            call(fd)
        return (time.perf_counter() - t) / n * 1e6
    finally:
        os.close(fd)


def small_file_job(d: Path, n: int) -> float:
    """What a scatter step does to a shared filesystem: many tiny files."""
    sub = d / f"job{time.monotonic_ns()}"
    t = time.perf_counter()
    sub.mkdir()
    for i in range(n):
        (sub / f"part{i}.txt").write_text(f"{i}\n")
    for i in range(n):
        os.stat(sub / f"part{i}.txt")
    total = sum(int((sub / f"part{i}.txt").read_text()) for i in range(n))
    assert total == n * (n - 1) // 2
    return time.perf_counter() - t


NOISY_UID, QUIET_UID = 1000, 1001
# What each flood below does, as the results' table says it.
FLOODS = {"descriptor_flood": "creates 20,000 files, then `find`s them",
          "listing_flood": "holds twenty open listings of a 50,000-entry directory, three times over",
          "deep_names": "makes 1,500 nested directories of 250-character names",
          "big_write_fsync": "writes a big file (`--noisy-mb`) and fsyncs it"}
NOISE = {
    "descriptor_flood": """
import os, subprocess, sys
d = sys.argv[1] + "/flood"
os.makedirs(d)
for i in range(20000):
    os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
assert subprocess.run(["find", d], capture_output=True, text=True).stdout.count("\\n") == 20001
""",
    "listing_flood": """
import os, sys
d = sys.argv[1] + "/many"
for _ in range(3):
    its = [os.scandir(d) for _ in range(20)]
    for it in its:
        assert sum(1 for _ in it) == 50000
""",
    "deep_names": """
import os, sys
os.chdir(sys.argv[1])
for _ in range(1500):
    os.mkdir("d" * 250)
    os.chdir("d" * 250)
""",
    "big_write_fsync": """
import os, sys
buf = os.urandom(1 << 20)
with open(sys.argv[1] + "/big.bin", "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(buf)
    f.flush()
    os.fsync(f.fileno())
""",
}


def as_uid(uid: int, code: str, *args: str, stdin: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3",
                             "-c", code, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/")


def quiet_user(d: Path, during: Callable[[], None]) -> tuple[list[float], list[str]]:
    """The quiet user's latencies (ms) and errors while `during()` runs."""
    q = as_uid(QUIET_UID, QUIET_USER, str(d), stdin=subprocess.PIPE)
    time.sleep(0.3)
    try:
        during()
    finally:
        out, err = q.communicate("stop\n", timeout=60)
    if q.returncode != 0:
        raise SystemExit(f"bench: the quiet user failed: {err}")
    lat, errors = out.split("\n")[:2]
    return [float(x) for x in lat.split()], [e for e in errors.split("|") if e]


def noisy_neighbour(lc, big_mb: int) -> dict:
    """Row 3: the quiet user's median latency under each flood, against idle."""
    mnt = lc.mnt("A")
    play = mnt / "noisy"
    play.mkdir()
    play.chmod(0o777)
    many = lc.backing / "noisy/many"
    many.mkdir()
    (many / "x").write_text("")
    for i in range(1, 50000):
        os.link(many / "x", many / f"link-with-a-longish-name-{i:06d}")
    idle, idle_err = quiet_user(play / "quiet-idle", lambda: time.sleep(3))
    base = statistics.median(idle)
    out: dict = {"quiet_user_op": "create+stat+unlink", "idle_median_ms": round(base, 3), "idle_ops": len(idle),
                 "target": "median within 5x idle, no errors", "floods": {}}
    for name, code in NOISE.items():
        def flood(code=code, name=name) -> None:
            t = time.perf_counter()
            p = as_uid(NOISY_UID, code, str(play), str(big_mb))
            _, err = p.communicate(timeout=900)
            if p.returncode != 0:
                raise SystemExit(f"bench: the {name} flood failed: {err}")
            out["floods"].setdefault(name, {})["flood_s"] = round(time.perf_counter() - t, 2)
        lat, errors = quiet_user(play / f"quiet-{name}", flood)
        med = statistics.median(lat)
        out["floods"][name].update({"median_ms": round(med, 3), "p95_ms": round(sorted(lat)[int(len(lat) * .95)], 3),
                                    "max_ms": round(max(lat), 3), "ops": len(lat), "over_idle": round(med / base, 2),
                                    "errors": errors})
        print(f"noisy {name:18} quiet median {med:7.3f} ms ({med / base:.2f}x idle {base:.3f}), "
              f"{len(errors)} errors", flush=True)
    out["idle_errors"] = idle_err
    return out


@contextmanager
def fresh_ext4(root: Path, size_mb: int) -> Iterator[str]:
    """Mount a new ext4 image (a loop device) on `root`: raw and client runs
    then share one filesystem in a known state. This machine's own root is
    mounted with `discard`; for minutes after anything freed many blocks there,
    every create runs several times slower, which would flatter the client.
    Yields what the results record about the volume."""
    fd, img = tempfile.mkstemp(prefix="minihpc-nfs-bench-", suffix=".ext4", dir="/var/tmp")
    try:
        os.posix_fallocate(fd, 0, size_mb << 20)
        os.close(fd)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", img],
                       check=True)
        subprocess.run(["mount", "-o", "loop", img, str(root)], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        os.unlink(img)
        raise SystemExit(f"bench: cannot mount a scratch ext4 image on {root} ({e}); this needs root and a "
                         "loop device (losetup -f)") from None
    try:
        yield f"fresh ext4 image of {size_mb} MiB on a loop device"
    finally:
        subprocess.run(["umount", str(root)], check=False)
        os.unlink(img)


def interleaved(reps: int, raw: Callable[[], float], client: Callable[[], float]
                ) -> tuple[float, list[float], float, list[float]]:
    """Medians of raw and client runs taken in turn, so that both see the
    same moments of this shared machine (its disk flushes, its neighbours)."""
    raw_s, cli_s = [], []
    for _ in range(reps):
        raw_s.append(raw())
        cli_s.append(client())
    return statistics.median(raw_s), raw_s, statistics.median(cli_s), cli_s


def median_of(reps: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    samples = [fn() for _ in range(reps)]
    return statistics.median(samples), samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mb", type=int, default=256, help="size of the sequential file")
    ap.add_argument("--files", type=int, default=2000, help="files for the stat/create rates")
    ap.add_argument("--job-files", type=int, default=200, help="files of the small-file job")
    ap.add_argument("--noisy-mb", type=int, default=2048, help="size of the noisy neighbour's big write")
    ap.add_argument("--workers", type=int, default=WORKERS, help=f"the client's --workers (default {WORKERS})")
    ap.add_argument("--only-noisy", action="store_true", help="run row 3 only, keeping the other rows' figures")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="minihpc-nfs-bench-"))
    out: dict = {"host": platform.node(), "cpus": os.cpu_count(), "reps": a.reps, "when": time.strftime("%FT%T%z"),
                 "client_workers": a.workers}
    size_mb = 2 * a.reps * a.mb + a.noisy_mb + 1536  # every sequential file is kept, raw and client
    try:
        with fresh_ext4(root, size_mb) as volume, local_cluster(root, named("off"),
                                                                client_args=("--workers", str(a.workers))) as lc:
            out["volume"] = volume
            if a.only_noisy:
                out = {**json.loads(RESULTS.read_text()), "noisy_neighbour": noisy_neighbour(lc, a.noisy_mb)}
                return 0
            raw_dir = lc.backing / "raw"
            raw_dir.mkdir()
            client_dir = lc.mnt("A") / "client"
            client_dir.mkdir()
            figures = {}
            for name, fn, arg in (("create_per_s", creates, a.files), ("stat_per_s", stats, a.files),
                                  ("seq_write_mbs", seq_write, a.mb), ("seq_read_mbs", seq_read, a.mb)):
                raw, raw_s, cli, cli_s = interleaved(a.reps, lambda fn=fn, arg=arg: fn(raw_dir, arg),
                                                     lambda fn=fn, arg=arg: fn(client_dir, arg))
                figures[name] = {"raw": round(raw, 1), "client": round(cli, 1), "ratio": round(cli / raw, 3),
                                 "raw_samples": [round(x, 1) for x in raw_s],
                                 "client_samples": [round(x, 1) for x in cli_s]}
                print(f"{name:14} raw {raw:10.1f}  client {cli:10.1f}  ratio {cli / raw:.3f}", flush=True)
            out["profile_off"] = figures
            trips = {}
            for kind in ROUND_TRIPS:
                raw, raw_s, cli, cli_s = interleaved(a.reps, lambda k=kind: round_trip(raw_dir, k),
                                                     lambda k=kind: round_trip(client_dir, k))
                trips[kind] = {"raw_us": round(raw, 1), "client_us": round(cli, 1),
                               "client_samples": [round(x, 1) for x in cli_s]}
                print(f"{kind:14} raw {raw:6.1f} us  client {cli:6.1f} us", flush=True)
            out["round_trip_us"] = trips
            out["targets"] = {"sequential_ratio_min": 0.30, "metadata_ratio_min": 0.20}

            job_dir = lc.mnt("A") / "jobs"
            job_dir.mkdir()
            base, base_s = median_of(a.reps, lambda: small_file_job(job_dir, a.job_files))
            rtt_profile = named("rtt-5ms")
            lc.set(rtt_profile)
            slow, rpcs, ratios = [], [], []
            for _ in range(a.reps):
                before = lc.wait_stats("A").get("rpcs", 0)
                t = small_file_job(job_dir, a.job_files)
                ops = lc.wait_stats("A").get("rpcs", 0) - before
                expected = ops * rtt_profile.rtt_ms / 1000
                slow.append(t)
                rpcs.append(ops)
                ratios.append((t - base) / expected)
            out["small_file_job"] = {
                "profile": rtt_profile.name, "rtt_ms": rtt_profile.rtt_ms, "files": a.job_files,
                "off_s": round(base, 3), "rtt_s": round(statistics.median(slow), 3),
                "server_ops": int(statistics.median(rpcs)),
                "expected_slowdown_s": round(statistics.median(rpcs) * rtt_profile.rtt_ms / 1000, 3),
                "measured_slowdown_s": round(statistics.median(slow) - base, 3),
                "measured_over_expected": round(statistics.median(ratios), 3),
                "target": "within 20 % of 1.0",
                "off_samples": [round(x, 3) for x in base_s], "rtt_samples": [round(x, 3) for x in slow],
            }
            print(json.dumps(out["small_file_job"], indent=1), flush=True)
            lc.set(named("off"))
            out["noisy_neighbour"] = noisy_neighbour(lc, a.noisy_mb)
    finally:
        os.rmdir(root)
        if "noisy_neighbour" in out:
            save("nfs", out, markdown)
    return 0


# The profile-off figures: what each is, and which of the targets applies.
FIGURES = {"create_per_s": ("create + 100-byte write + close, per s", "metadata_ratio_min"),
           "stat_per_s": ("`stat`, per s", "metadata_ratio_min"),
           "seq_write_mbs": ("sequential write, 1 MiB writes + fsync, MB/s", "sequential_ratio_min"),
           "seq_read_mbs": ("sequential read, MB/s", "sequential_ratio_min")}


def markdown(result: dict) -> str:
    off, targets, job, noisy = result["profile_off"], result["targets"], result["small_file_job"], \
        result["noisy_neighbour"]
    rates = [(label, f["raw"], f["client"], f["ratio"], against(f["ratio"], targets[target]),
              listed(f["raw_samples"]), listed(f["client_samples"]))
             for key, (label, target) in FIGURES.items() if (f := off.get(key))]
    job_rows = [("the job under profile `off`, s", job["off_s"], listed(job["off_samples"])),
                (f"the job under `{job['profile']}` ({job['rtt_ms']} ms a round trip), s", job["rtt_s"],
                 listed(job["rtt_samples"])),
                ("server operations (the client's counters)", job["server_ops"], ""),
                ("expected slowdown (operations x round trip), s", job["expected_slowdown_s"], ""),
                ("measured slowdown, s", job["measured_slowdown_s"], ""),
                (f"measured / expected (target: {job['target']})", job["measured_over_expected"], "")]
    floods = [(FLOODS.get(name, name), f["flood_s"], f["median_ms"], f["over_idle"], f["p95_ms"], f["max_ms"],
               f["ops"], listed(f["errors"]) or "none") for name, f in noisy["floods"].items()]
    workers = result.get("client_workers")
    serving = "" if workers is None else f", the client run with `--workers {workers}`"
    return "\n".join([
        *heading("NFS-style client", "nfs", result,
                 f"The client against the raw volume it serves ({result['volume']}) on `{result['host']}` "
                 f"({result['cpus']} CPUs){serving}; raw and client runs taken in turn, medians of {result['reps']}."),
        "Profile `off`:", "",
        *table(("figure", "raw", "client", "client / raw", "target", "raw samples", "client samples"), rates), "",
        *([] if "round_trip_us" not in result else [
            "What a create is made of: one call of each kind a create makes, timed from the caller, µs:", "",
            *table(("call (the requests the client gets)", "raw µs", "client µs", "client samples"),
                   [(ROUND_TRIPS[k][0], t["raw_us"], t["client_us"], listed(t["client_samples"]))
                    for k, t in result["round_trip_us"].items() if k in ROUND_TRIPS]), ""]),
        f"A small-file job (create, `stat` and read back {job['files']} files) under a round-trip profile; its "
        "slowdown against profile `off` should be the round trip times the server operations:", "",
        *table(("figure", "median", "samples"), job_rows), "",
        f"One noisy neighbour: a second user's {noisy['quiet_user_op']} while one user floods the client. Idle: "
        f"median {noisy['idle_median_ms']} ms over {noisy['idle_ops']} operations, errors: "
        f"{listed(noisy['idle_errors']) or 'none'}. Target: {noisy['target']}.", "",
        *table(("while one user...", "flood s", "median ms", "x idle", "p95 ms", "max ms", "operations", "errors"),
               floods),
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(main())

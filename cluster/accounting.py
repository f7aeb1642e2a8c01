#!/usr/bin/env python3
"""Make slurmdbd hold the site's accounting: the cluster, its QOS and their
limits, the account tree and each user's association, default account and
QOS. Reads the accounting.json minihpc.topology renders from minihpc.policy.

Idempotent and convergent: what is missing is added, what exists is set to
the declared values, so it runs at every slurmdbd start and after every
`minihpc up` (a database kept across `down`/`up` catches up). Runs inside the
slurmdbd container with only python3 and sacctmgr."""

from __future__ import annotations

import json
import subprocess
import sys

UNCHANGED = ("Nothing new added", "Nothing modified", "didn't affect anything")


def sacctmgr(*args: str) -> str:
    r = subprocess.run(["sacctmgr", "-i", "-n", "-P", *args], capture_output=True, text=True, check=False)
    # "Nothing new added", "Request didn't affect anything": the state is already right.
    if r.returncode != 0 and not any(s in r.stdout + r.stderr for s in UNCHANGED):
        sys.exit(f"accounting: sacctmgr {' '.join(args)} failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def names(*args: str) -> set[str]:
    return {line.split("|")[0] for line in sacctmgr("list", *args).splitlines() if line}


def main(path: str) -> int:
    want = json.load(open(path))
    cluster = want["cluster"]
    if cluster not in names("cluster", "format=cluster"):
        sacctmgr("add", "cluster", cluster)
    have = names("qos", "format=name")
    for q in want["qos"]:
        if q["name"] not in have:
            sacctmgr("add", "qos", q["name"])
        sacctmgr("modify", "qos", "where", f"name={q['name']}", "set", *(f"{k}={v}" for k, v in q["set"].items()))
    have = names("account", "format=account")
    for a in want["accounts"]:  # parents come first in the list
        if a["name"] not in have:
            sacctmgr("add", "account", a["name"], f"parent={a['parent']}", f"cluster={cluster}",
                     f"Description={a['description']}", "Organization=minihpc")
        else:
            sacctmgr("modify", "account", "where", f"name={a['name']}", f"cluster={cluster}",
                     "set", f"parent={a['parent']}")
    for u in want["users"]:
        mine = names("assoc", f"user={u['name']}", f"cluster={cluster}", "format=account")
        if u["account"] not in mine:
            sacctmgr("add", "user", u["name"], f"account={u['account']}", f"DefaultAccount={u['account']}",
                     f"cluster={cluster}")
        sacctmgr("modify", "user", "where", f"name={u['name']}", f"cluster={cluster}", "set",
                 f"DefaultAccount={u['account']}", f"QOS={','.join(u['qos'])}", f"DefaultQOS={u['default_qos']}")
    print(f"accounting ready: cluster {cluster}, accounts {', '.join(a['name'] for a in want['accounts'])}, "
          f"users {', '.join(u['name'] + '@' + u['account'] for u in want['users'])}, "
          f"QOS {', '.join(q['name'] for q in want['qos'])}")
    return 0


def applied(path: str) -> int:
    """0 once slurmdbd holds what main() writes last: every user's QOS and
    default QOS, so the QOS limits written before them too. A new cluster's
    slurmctld starts only then (entrypoint.sh): it loads the accounting when
    it starts, and a change made while it starts can miss it (slurmdbd's push
    refused, "update cluster: Connection refused"; on Slurm 22.05 the debug
    QOS once had no MaxJobsPerUser in slurmctld, and two debug jobs ran)."""
    want = json.load(open(path))
    for u in want["users"]:
        rows = sacctmgr("list", "assoc", f"user={u['name']}", f"cluster={want['cluster']}",
                        f"account={u['account']}", "format=QOS,DefaultQOS").splitlines()
        qos, _, default = (rows[0] if rows else "").partition("|")
        if sorted(qos.split(",")) != sorted(u["qos"]) or default != u["default_qos"]:
            print(f"accounting: {u['name']} not yet as declared ({rows})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    # --applied: check only (slurmctld's entrypoint waits on it); else apply.
    args = sys.argv[1:]
    check = args[:1] == ["--applied"]
    path = (args[1:] if check else args)[:1] or ["/etc/minihpc/slurm/accounting.json"]
    sys.exit(applied(path[0]) if check else main(path[0]))

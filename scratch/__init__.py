"""Per-node scratch: each compute node's and the login node's private /scratch.

policy.py says what scratch is (where, how big by default, who may write,
the per-job prefix jobs stage under); inspect.py is what the host runs on a
node to see and empty it. Nothing else restates either.
"""

"""The course module's cores and instructor demos, run and checked on the cluster
(the material itself, what lands on /shared, is in lab/).

What other features use of it (minihpc.sitecheck, minihpc.classroom): the
course's proofs a site or a learner can run, `on_site`, which runs one on a
site's cluster, and `unprivileged`, which runs one as any user. The rest
(labctl, cores, confirm, demos, ...) is the course's own.
"""

from __future__ import annotations

from pathlib import Path

from minihpc.cluster import Cluster
from minihpc.course import cores, staging
from minihpc.course.labctl import Labs
from minihpc.proofs import Proof
from minihpc.sitefile import Site

# The cores a site, or a learner of a class, can run: they need no root, no fault injection and no NFS profiles.
SITE_CORES = ("core1", "core2", "core4", "core5")
# ...and the staging lab, through the site's node-local scratch (a site file's `scratch`).
SITE_STAGING = "staging"


def unprivileged(name: str, labs: Labs) -> Proof:
    """Run one of SITE_CORES (or, on a site, SITE_STAGING) as `labs`' user, with no root."""
    if name == SITE_STAGING and labs.site is not None:
        return staging.on_site(labs)
    if name not in SITE_CORES:
        raise ValueError(f"{name} is not a course proof that runs without root ({', '.join(SITE_CORES)})")
    # Core 2's interrupted run needs fault injection.
    return cores.core2(labs, interrupt=False) if name == "core2" else cores.CORES[name](labs)


def on_site(name: str, client: Cluster, site: Site, proof_dir: Path) -> Proof:
    """Run one of SITE_CORES or SITE_STAGING on the site's cluster `client`
    reaches, with minihpc's profiles made for the site and its proofs to `proof_dir`."""
    return unprivileged(name, Labs(client, site, proof_dir))

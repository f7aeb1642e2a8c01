"""The SLURM REST API (Debian's slurmrestd, the `restd` service), from the host.

slurmrestd listens on the cluster's network only (REST_PORT at the restd
service's fixed address; published nowhere), runs as a user of its own and
accepts tokens only (rest_auth/jwt). Every request carries a user's name and
token (X-SLURM-USER-NAME, X-SLURM-USER-TOKEN) and gets that user's rights:
with PrivateData, a learner's token reads their own jobs and no one else's.
A token is made by `scontrol token` on the controller, as root, for a user
and a lifespan; the signing key never leaves slurmctld and slurmdbd.
minihpc only ever reads through it (GET).
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.error
import urllib.request
from dataclasses import dataclass

from minihpc import releases
from minihpc.cluster import Cluster
from minihpc.errors import MinihpcError
from minihpc.facts import REST, REST_PORT, Facts

# slurmdbd's "Nothing found with query" (22.05's openapi/dbv0.0.38 says it of an empty answer).
NOTHING_FOUND = 9003
# A user's name as Slurm and the nodes know it (the class's learners, the lab users).
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict | None  # the JSON answer, if it was JSON

    @property
    def ok(self) -> bool:
        """Answered, with no error: a token slurmctld or slurmdbd refuses comes back as 5xx with
        Slurm's error (a missing one as 401), and a ping answers 200 whoever asks."""
        return self.status == 200 and self.body is not None and not self.errors

    @property
    def errors(self) -> list[str]:
        """Slurm's own error descriptions in the answer, if any. 22.05 reports an empty answer as
        an error ("Nothing found with query", 9003): that one is an empty list, not a failure."""
        return [str(e.get("description") or e.get("error") or e) for e in (self.body or {}).get("errors", [])
                if isinstance(e, dict) and e.get("error_number") != NOTHING_FOUND]


def job_owner(job: dict) -> str:
    """Whose a job is, in either API's answer (/slurm/ says user_name, /slurmdb/ user)."""
    return str(job.get("user_name") or job.get("user") or "")


def base_url(f: Facts) -> str:
    return f"http://{f.addresses[REST]}:{REST_PORT}"


def api(f: Facts) -> str:
    """The API version this cluster's slurmrestd serves (its Slurm release's newest)."""
    return releases.named(f.slurm).rest_api


def token(client: Cluster, user: str, lifespan_s: int) -> str:
    """A token for `user`, good for lifespan_s seconds, made by the controller (as root)."""
    if not USER.fullmatch(user):
        raise MinihpcError(f"{user[:40]!r} is not a user name", "name a user of the cluster, e.g. a learner")
    r = client.root(f"scontrol token username={shlex.quote(user)} lifespan={int(lifespan_s)}", node="slurmctld",
                    timeout=30)
    m = re.search(r"^SLURM_JWT=(\S+)$", r.out, re.M)
    if r.rc != 0 or m is None:
        raise MinihpcError(f"scontrol token for {user} failed: {r.out.strip()[-300:]}", "see minihpc logs slurmctld")
    return m[1]


def get(f: Facts, path: str, user: str | None, jwt: str | None, timeout: float = 15) -> Answer:
    """GET `path` (e.g. /slurm/v0.0.42/jobs) as `user` with `jwt`; None leaves that header out."""
    headers = {"Accept": "application/json"}
    if user is not None:
        headers["X-SLURM-USER-NAME"] = user
    if jwt is not None:
        headers["X-SLURM-USER-TOKEN"] = jwt
    req = urllib.request.Request(base_url(f) + path, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the cluster's own address)
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise MinihpcError(f"the REST API at {base_url(f)} did not answer: {e}",
                           f"is the cluster up? minihpc status (and minihpc logs {REST})") from None
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Answer(status, body if isinstance(body, dict) else None)

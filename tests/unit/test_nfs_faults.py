"""Fault rules and named profiles of the NFS-style client."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from nfs.faults import FaultError, FaultRule, FaultSet, claim_in
from nfs.model import NodeModel
from nfs.profiles import DEFAULT, PROFILES, Profile, ProfileError, claims_dir, named, read_active, write_active


def test_rule_matches_op_path_glob_and_node():
    r = FaultRule("EIO", op="write|create", path="/lab/results/*", node="c*", count=5)
    assert r.matches("write", "/lab/results/a.txt", "c1")
    assert r.matches("create", "/lab/results/x/y", "c12")  # fnmatch: * crosses /
    assert not r.matches("read", "/lab/results/a.txt", "c1")
    assert not r.matches("write", "/lab/other.txt", "c1")
    assert not r.matches("write", "/lab/results/a.txt", "login")


def test_count_fails_the_first_n_matches_only():
    fs = FaultSet([FaultRule("ENOSPC", op="write", count=2)], node="c1")
    got = [fs.check("write", "/f") for _ in range(4)]
    assert got == [errno.ENOSPC, errno.ENOSPC, None, None]
    assert fs.check("read", "/f") is None


def test_probability_is_reproducible_with_a_seed():
    def pattern(seed: int) -> list[bool]:
        fs = FaultSet([FaultRule("EIO", probability=0.3, seed=seed)], node="a")
        return [fs.check("read", "/f") is not None for _ in range(200)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)
    assert 30 < sum(pattern(1)) < 90


def test_every_errno_the_issue_names():
    for name, code in (("EIO", errno.EIO), ("ENOSPC", errno.ENOSPC), ("EDQUOT", errno.EDQUOT),
                       ("EACCES", errno.EACCES), ("ESTALE", errno.ESTALE)):
        assert FaultSet([FaultRule(name, count=1)], "a").check("open", "/x") == code


def test_first_rule_that_fires_wins_and_the_node_filter_applies():
    rules = [FaultRule("EACCES", node="login", count=1), FaultRule("ESTALE", count=1)]
    assert FaultSet(rules, "login").check("getattr", "/f") == errno.EACCES
    assert FaultSet(rules, "c1").check("getattr", "/f") == errno.ESTALE


def test_each_profile_load_starts_the_counters_over():
    p = Profile("t", faults=(FaultRule("EIO", count=1),))
    for _ in range(2):
        m = NodeModel("a", p, store=None)  # type: ignore[arg-type]
        with pytest.raises(OSError) as e:
            m.fault("read", "/f")
        assert e.value.errno == errno.EIO
        m.fault("read", "/f")


def test_cli_form_parses_and_bad_rules_say_how_to_fix_them():
    r = FaultRule.parse("eio:op=write,path=/lab/*,node=c1,count=1")
    assert (r.error, r.op, r.path, r.node, r.count) == ("EIO", "write", "/lab/*", "c1", 1)
    assert FaultRule.parse("ESTALE:probability=0.5,seed=3").probability == 0.5
    for bad, hint in (("EPERM:count=1", "not one of"), ("EIO", "exactly one of"),
                      ("EIO:count=1,probability=0.1", "exactly one of"), ("EIO:op=frobnicate,count=1", "op"),
                      ("EIO:path", "key=value"), ("EIO:count=x", "not a number"), ("EIO:count=0", "at least 1")):
        with pytest.raises(FaultError, match=hint):
            FaultRule.parse(bad)


def test_named_profiles_cover_the_lessons():
    assert DEFAULT in PROFILES
    assert named("off").noac and named("off").lookupcache == "none" and named("off").delay == 0
    linux = named("linux")
    assert (linux.acregmin, linux.acregmax, linux.acdirmin, linux.acdirmax, linux.lookupcache) == (3, 60, 30, 60, "all")
    assert any(0 < p.delay <= 5 for p in PROFILES.values()), "a deterministic delay within the default wait"
    assert any(p.delay > 5 for p in PROFILES.values()), "one that defeats Snakemake's default 5 s latency-wait"
    assert named("slow-metadata").meta_ms > 0
    with pytest.raises(ProfileError, match="choose one of"):
        named("nope")


def test_overrides_are_checked():
    assert named("delay-3").with_options(delay="7.5").delay == 7.5
    for bad, hint in (({"delay": "soon"}, "not a number"), ({"colour": 1}, "unknown profile setting"),
                      ({"lookupcache": "some"}, "lookupcache"), ({"rtt_ms": -1}, "negative")):
        with pytest.raises(ProfileError, match=hint):
            named("off").with_options(**bad)


def test_active_profile_file_round_trips(tmp_path: Path):
    f = tmp_path / "control/profile.json"
    assert read_active(f).name == DEFAULT
    p = named("lag-10").with_options(rtt_ms=2)
    p = Profile.from_dict({**p.to_dict(), "faults": [FaultRule("EIO", path="/x", count=1).to_dict()]})
    write_active(f, p)
    back = read_active(f)
    assert back.to_dict() == p.to_dict()
    f.write_text("{not json")
    with pytest.raises(ProfileError, match="minihpc nfs set"):
        read_active(f)


def test_a_cluster_wide_rule_fails_count_operations_in_all_whichever_node_does_them(tmp_path: Path) -> None:
    """scope=cluster: one failed write of a file, wherever the job writing it
    runs; the job run again on another node writes it."""
    rule = FaultRule.parse("EIO:op=write,path=/out/3.txt,count=1,scope=cluster")
    c1, c2 = (FaultSet([rule], node, claim_in(tmp_path), "p1") for node in ("c1", "c2"))
    assert c2.check("write", "/out/3.txt") == errno.EIO
    assert c1.check("write", "/out/3.txt") is None and c2.check("write", "/out/3.txt") is None
    assert c1.check("write", "/out/2.txt") is None
    # A profile set again starts over (its claims are emptied by write_active).
    fresh = tmp_path / "control"
    write_active(fresh / "profile.json", Profile("t", faults=(rule,)))
    assert list(claims_dir(fresh / "profile.json").iterdir()) == []
    again = FaultSet([rule], "c1", claim_in(claims_dir(fresh / "profile.json")), "p1")
    assert again.check("write", "/out/3.txt") == errno.EIO
    (claims_dir(fresh / "profile.json") / "stale").touch()
    write_active(fresh / "profile.json", Profile("t", faults=(rule,)))
    assert list(claims_dir(fresh / "profile.json").iterdir()) == []


@pytest.mark.parametrize(("spec", "said"), [("EIO:scope=planet,count=1", "fault scope 'planet'"),
                                            ("EIO:scope=cluster,probability=0.5", "needs count=N")])
def test_a_bad_scope_is_refused(spec: str, said: str) -> None:
    with pytest.raises(FaultError, match=said):
        FaultRule.parse(spec)


def test_a_key_given_twice_is_refused_not_the_last_one_taken() -> None:
    """A path that holds `,op=*,path=*` (a workflow names its outputs) cannot widen the rule."""
    with pytest.raises(FaultError, match="is given twice"):
        FaultRule.parse("EIO:op=write,path=/lab/r/zz,op=*,path=*,count=1")


def test_a_cluster_wide_rule_has_few_claims_and_stops_trying_once_they_are_taken(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match="at most 100"):
        FaultRule.parse("EIO:count=101,scope=cluster")
    tries: list[str] = []

    def claim(name: str) -> bool:
        tries.append(name)
        return False
    fs = FaultSet([FaultRule.parse("EIO:count=3,scope=cluster")], "c1", claim, "p")
    assert fs.check("write", "/a") is None and fs.check("write", "/b") is None
    assert tries == ["p-0-0", "p-0-1", "p-0-2"], "taken once: not tried again"

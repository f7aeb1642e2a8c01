"""The NFS behaviour model, driven by a fake clock against a fake server."""

from __future__ import annotations

import errno
import posixpath

import pytest

from nfs.model import Attrs, NodeModel
from nfs.profiles import Profile, named


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)


class FakeServer:
    """A server tree; every change stamps ctime/mtime from the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.files: dict[str, Attrs] = {}
        self._ino = 1
        self._put("/", 0o40755, 0)

    def _put(self, path: str, mode: int, size: int) -> None:
        ns = int(self.clock() * 1e9)
        old = self.files.get(path)
        ino = old.ino if old else self._next()
        self.files[path] = Attrs(mode, ino, 1, 1000, 1000, size, ns, ns, ns)

    def _next(self) -> int:
        self._ino += 1
        return self._ino

    def _touch_parent(self, path: str) -> None:
        parent = posixpath.dirname(path)
        self._put(parent, self.files[parent].mode, 0)

    def write(self, path: str, size: int) -> None:
        new = path not in self.files
        self._put(path, 0o100644, size)
        if new:
            self._touch_parent(path)

    def mkdir(self, path: str) -> None:
        self._put(path, 0o40755, 0)
        self._touch_parent(path)

    def delete(self, path: str) -> None:
        del self.files[path]
        self._touch_parent(path)

    def stat(self, path: str) -> Attrs:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "No such file", path) from None

    def listdir(self, path: str) -> list[tuple[str, int, int]]:
        prefix = path.rstrip("/") + "/"
        return sorted((p[len(prefix):], a.ino, a.mode & 0o170000) for p, a in self.files.items()
                      if p.startswith(prefix) and "/" not in p[len(prefix):] and p != path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> FakeServer:
    return FakeServer(clock)


def node(server: FakeServer, clock: FakeClock, profile: Profile | str, name: str = "a") -> NodeModel:
    p = named(profile) if isinstance(profile, str) else profile
    return NodeModel(name, p, server, clock=clock, sleep=clock.sleep)


LINUX = Profile("t", acregmin=3, acregmax=60, acdirmin=30, acdirmax=60, lookupcache="all")


def rpcs(m: NodeModel) -> int:
    return m.stats["rpcs"]


# -- attribute cache -------------------------------------------------------

def test_attribute_cache_serves_until_acregmin(server, clock):
    server.write("/f", 1)
    m = node(server, clock, LINUX)
    m.stat("/f")
    assert rpcs(m) == 1
    clock.t += 2.999
    m.stat("/f")
    assert rpcs(m) == 1, "within acregmin the cached attributes answer"
    clock.t += 0.001
    m.stat("/f")
    assert rpcs(m) == 2, "at acregmin the client asks the server again"


def test_timeout_doubles_while_unchanged_and_caps_at_acregmax(server, clock):
    server.write("/f", 1)
    m = node(server, clock, LINUX)
    m.stat("/f")
    timeouts = []
    for _ in range(7):
        before = rpcs(m)
        start = clock.t
        while rpcs(m) == before:
            clock.t += 0.5
            m.stat("/f")
        timeouts.append(clock.t - start)
    assert timeouts == [3, 6, 12, 24, 48, 60, 60]


def test_a_change_resets_the_timeout_to_acregmin(server, clock):
    server.write("/f", 1)
    m = node(server, clock, LINUX)
    m.stat("/f")
    clock.t += 3
    m.stat("/f")  # unchanged: timeo 6
    clock.t += 6
    server.write("/f", 2)
    assert m.stat("/f").size == 2  # changed: timeo back to 3
    clock.t += 2.9
    m.stat("/f")
    n = rpcs(m)
    clock.t += 0.1
    m.stat("/f")
    assert rpcs(m) == n + 1


def test_stale_size_until_the_cache_expires(server, clock):
    server.write("/f", 1)
    m = node(server, clock, LINUX)
    assert m.stat("/f").size == 1
    server.write("/f", 99)
    clock.t += 1
    assert m.stat("/f").size == 1, "another client's change is not seen while the attributes are cached"
    clock.t += 2
    assert m.stat("/f").size == 99


def test_directories_use_acdirmin(server, clock):
    server.mkdir("/d")
    m = node(server, clock, LINUX)
    m.stat("/d")
    clock.t += 29.9
    m.stat("/d")
    assert rpcs(m) == 1
    clock.t += 0.1
    m.stat("/d")
    assert rpcs(m) == 2


def test_actimeo_sets_all_four_timeouts(server, clock):
    p = LINUX.with_options(actimeo=5)
    assert (p.acregmin, p.acregmax, p.acdirmin, p.acdirmax) == (5, 5, 5, 5)
    server.write("/f", 1)
    m = node(server, clock, p)
    for _ in range(40):  # a stat every 0.5 s for 20 s
        m.stat("/f")
        clock.t += 0.5
    assert rpcs(m) == 4, "actimeo pins the timeout at 5 s: asks at 0, 5, 10, 15 s"


def test_noac_asks_the_server_every_time(server, clock):
    server.write("/f", 1)
    m = node(server, clock, LINUX.with_options(noac=1))
    for _ in range(5):
        m.stat("/f")
    assert rpcs(m) == 5


# -- lookup cache ----------------------------------------------------------

def test_negative_entry_lasts_until_the_parent_revalidates(server, clock):
    server.mkdir("/d")
    a = node(server, clock, LINUX)
    with pytest.raises(FileNotFoundError):
        a.stat("/d/out")
    n = rpcs(a)
    clock.t += 1
    server.write("/d/out", 5)  # another node creates it: the parent's mtime changes
    for dt in (0, 10, 28.9):
        clock.t = 1000 + 1 + dt
        with pytest.raises(FileNotFoundError):
            a.stat("/d/out")
    assert rpcs(a) == n, "the negative entry answered without asking the server"
    clock.t = 1000 + 30  # the parent's attributes (acdirmin=30) expire
    a.stat("/d")  # revalidating the parent finds it changed and drops the entry
    assert a.stat("/d/out").size == 5


def test_lookupcache_pos_keeps_no_negative_entries(server, clock):
    server.mkdir("/d")
    a = node(server, clock, LINUX.with_options(lookupcache="pos"))
    with pytest.raises(FileNotFoundError):
        a.stat("/d/out")
    server.write("/d/out", 5)
    assert a.stat("/d/out").size == 5


def test_lookupcache_none_looks_up_every_path_but_handles_use_the_cache(server, clock):
    server.write("/f", 1)
    a = node(server, clock, LINUX.with_options(lookupcache="none"))
    a.stat("/f")
    a.stat("/f")
    assert rpcs(a) == 2
    a.stat("/f", handle=True)
    assert rpcs(a) == 2, "an open file's attributes come from the attribute cache"


# -- close-to-open and own writes -----------------------------------------

def test_open_revalidates(server, clock):
    server.write("/f", 1)
    a = node(server, clock, LINUX)
    a.stat("/f")
    server.write("/f", 7)
    assert a.stat("/f").size == 1
    assert a.revalidate("/f").size == 7, "open() always asks the server (close-to-open)"
    assert a.stat("/f").size == 7


def test_a_node_sees_its_own_writes_at_once(server, clock):
    server.mkdir("/d")
    a = node(server, clock, Profile("t", delay=60, lookupcache="all"))
    with pytest.raises(FileNotFoundError):
        a.stat("/d/f")  # negative entry
    server.write("/d/f", 3)  # the write this node makes...
    a.own_change("/d/f")  # ...and the reply it gets
    assert a.stat("/d/f").size == 3
    server.write("/d/f", 4)
    a.own_change("/d/f")
    assert a.stat("/d/f").size == 4


# -- deterministic delay ---------------------------------------------------

def test_another_nodes_new_file_is_invisible_for_exactly_d_seconds(server, clock):
    server.mkdir("/d")
    login = node(server, clock, "delay-3", "login")
    c1 = node(server, clock, "delay-3", "c1")
    server.write("/d/out", 10)
    c1.own_change("/d/out")
    t0 = clock.t
    assert c1.stat("/d/out").size == 10
    clock.t = t0 + 3 - 1e-3
    with pytest.raises(FileNotFoundError):
        login.stat("/d/out")
    assert "out" not in [e[0] for e in login.listdir("/d")]
    clock.t = t0 + 3
    assert login.stat("/d/out").size == 10
    assert "out" in [e[0] for e in login.listdir("/d")]


def test_a_change_shows_the_old_attributes_for_d_seconds(server, clock):
    login = node(server, clock, "delay-3", "login")
    server.write("/f", 1)
    clock.t += 5
    assert login.stat("/f").size == 1
    server.write("/f", 2)
    t0 = clock.t
    clock.t = t0 + 2.999
    assert login.stat("/f").size == 1, "stale until ctime + D"
    clock.t = t0 + 3
    assert login.stat("/f").size == 2


def test_what_changed_before_the_profile_was_switched_on_shows_at_once(server, clock):
    """A switch is not a change: the lab laid out before the delay was turned
    on is there at once; what changes afterwards waits D."""
    login = node(server, clock, "off")
    server.write("/before", 1)
    clock.t += 0.5
    login.set_profile(named("delay-3"))
    assert login.stat("/before").size == 1
    server.write("/after", 1)
    with pytest.raises(FileNotFoundError):
        login.stat("/after")
    server.write("/before", 2)
    assert login.stat("/before").size == 1, "a change after the switch is delayed"


def test_a_deletion_shows_at_once(server, clock):
    """Only creations and changes are delayed: a file deleted elsewhere must be
    re-creatable here at once (a stale entry would be opened without O_CREAT)."""
    login = node(server, clock, "delay-3", "login")
    server.write("/f", 1)
    clock.t += 5
    login.stat("/f")
    server.delete("/f")
    with pytest.raises(FileNotFoundError):
        login.stat("/f")


def test_directories_are_exempt_unless_delay_dirs(server, clock):
    server.mkdir("/d")
    assert node(server, clock, "delay-3").stat("/d").is_dir
    strict = node(server, clock, named("delay-3").with_options(delay_dirs=True))
    with pytest.raises(FileNotFoundError):
        strict.stat("/d")


def test_profile_off_shows_everything_at_once(server, clock):
    login = node(server, clock, "off")
    server.write("/f", 1)
    assert login.stat("/f").size == 1
    server.write("/f", 2)
    assert login.stat("/f").size == 2


# -- latency ---------------------------------------------------------------

def test_latency_is_charged_per_round_trip_and_per_byte(server, clock):
    p = Profile("t", rtt_ms=5, meta_ms=20, bandwidth_mbs=100, acregmin=3, acregmax=60)
    server.write("/f", 1)
    m = node(server, clock, p)
    m.stat("/f")
    assert clock.slept == [pytest.approx(0.025)]
    m.stat("/f")
    assert len(clock.slept) == 1, "a cached stat costs nothing"
    m.rpc("read", 1_000_000)
    assert clock.slept[-1] == pytest.approx(0.005 + 0.01)
    assert m.snapshot()["charged_s"] == pytest.approx(0.040)


def test_jitter_is_seeded_and_bounded(server, clock):
    p = Profile("t", rtt_ms=10, jitter_ms=2, seed=7, acregmin=0, acregmax=0, acdirmin=0, acdirmax=0)
    runs = []
    for _ in range(2):
        c = FakeClock()
        m = NodeModel("a", p, server, clock=c, sleep=c.sleep)
        for _ in range(50):
            m.rpc("getattr")
        runs.append(c.slept)
    assert runs[0] == runs[1]
    assert all(0.008 <= s <= 0.012 for s in runs[0]) and len(set(runs[0])) > 10


def test_a_delay_on_a_path_lags_only_that_path(server, clock):
    """delay_path: another node's new file under it stays invisible for D
    seconds; one elsewhere shows at once (a proof's lag on its own run)."""
    server.mkdir("/run")
    server.mkdir("/other")
    login = node(server, clock, named("delay-3").with_options(delay_path="/run/*"), "login")
    server.write("/run/out", 1)
    server.write("/other/out", 1)
    assert login.stat("/other/out").size == 1
    assert "out" in [e[0] for e in login.listdir("/other")]
    with pytest.raises(FileNotFoundError):
        login.stat("/run/out")
    assert "out" not in [e[0] for e in login.listdir("/run")]
    clock.t += 3
    assert login.stat("/run/out").size == 1


def test_a_delay_path_must_be_everything_or_absolute() -> None:
    from nfs.ctl import describe
    from nfs.profiles import ProfileError
    with pytest.raises(ProfileError, match="delay_path='run/\\*': give '\\*' or a path under the mountpoint"):
        named("lag-10").with_options(delay_path="run/*")
    assert "delay: 10s on /run/* (directories exempt)" in describe(named("lag-10").with_options(delay_path="/run/*"))
    assert "delay: 10s (directories exempt)" in describe(named("lag-10"))

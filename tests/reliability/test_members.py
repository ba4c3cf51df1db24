"""
Pool members that die, hang, go slow or flap, under load through a real
`twistd -n muxpool` switch in front of issuer simulators (each its own
twistd, recording every answer): the accounting holds in each, and each
prints what it cost.
"""

import os
import signal
import time

import pytest_twisted
from twisted.internet.task import deferLater

from muxpool.testing import DOWNSTREAM, FaultProxy
from tests.deployfiles import freePort, front, pool
from tests.e2e import issuers, reactor, stopIssuers, switch, until
from tests.reliability.scenario import Load, account, finish, scaled, split
from tests.twistdproc import Twistd

NAMES = ["issuer-1", "issuer-2", "issuer-3"]


def records(made):
    return [r for _, _, r in made]


@pytest_twisted.inlineCallbacks
def test_node_loss_an_issuer_killed_restarts_and_rejoins(tmp_path, figures):
    """
    kill -9 one issuer of three under load: only what was in flight on it
    fails (each told unknown), the others carry the load, and once it is
    back the split is even again.
    """
    made = issuers(tmp_path, count=3, delay=0)
    proc, port, _ = switch(tmp_path, [p for _, p, _ in made], timeout=3000)
    runs = [made[1][0]]
    load = yield Load(port, inFlight=16, timeout=5).start()
    try:
        yield load.whenDone(scaled(1500, 10000))
        killedAt = time.monotonic()
        os.kill(made[1][0].process.pid, signal.SIGKILL)
        yield until(lambda: proc.hasLogged("channel-2: disconnected"), what="the loss seen")
        seen = time.monotonic() - killedAt
        yield load.whenDone(scaled(1500, 10000))
        readyBefore = proc.countLogged("channel-2: ready")
        restarted = Twistd(tmp_path / "issuer-2", tmp_path)
        runs.append(restarted)
        restartedAt = time.monotonic()
        yield until(
            lambda: proc.hasLogged("channel-2: ready", count=readyBefore + 1), what="rejoined"
        )
        rejoin = time.monotonic() - restartedAt
        backAt = time.monotonic()
        yield load.whenDone(scaled(3000, 20000))
        yield load.stop()
    finally:
        yield load.stop()
        code = proc.stop()
        assert [r.stop() for r in runs][1:] == [0]
        stopIssuers([made[0], made[2]])
    acc = account(load, records(made), proc.log, NAMES, switchTimeout=3.0)
    failed = {k: n for k, n in acc.outcomes.items() if k != "00"}
    assert set(failed) <= {"68"}, failed  # outcome unknown: it was in flight there
    assert sum(failed.values()) <= 16 + 2, failed
    after = split(load, sorted(load.between(backAt))[200:])
    assert sum(after.values()) >= 1000
    for name in NAMES:
        assert 0.25 <= after[name] / sum(after.values()) <= 0.42, after
    assert code == 0 and "Traceback" not in proc.log
    figures.update(acc.figures())
    figures.update(
        {
            "loss seen by the switch s": round(seen, 2),
            "restart to rejoined s": round(rejoin, 2),
            "split after rejoin": dict(after),
        }
    )


@pytest_twisted.inlineCallbacks
def test_a_hung_issuer_is_ejected_by_its_timeouts_and_returns_by_its_echo(tmp_path, figures):
    """
    An issuer behind the fault proxy's blackhole (its connection up, its
    kernel acking, no answer): echo and outlier ejection take it out; the
    requests it cost end at their timeout, told unknown; once the hole is
    lifted its echo is answered and it returns.
    """
    made = issuers(tmp_path, count=2, delay=0)
    proxy = FaultProxy(reactor(), made[1][1])
    proxy.startService()
    proc, port, _ = switch(
        tmp_path,
        [made[0][1], proxy.port],
        channel="\n  <echo-interval>1000</echo-interval>\n  <echo-timeout>2000</echo-timeout>",
        poolExtra="\n  <consecutive-timeouts>3</consecutive-timeouts>",
        timeout=2000,
    )
    load = yield Load(port, inFlight=16, timeout=4).start()
    try:
        yield load.whenDone(1000)
        hungAt = time.monotonic()
        proxy.blackhole()
        yield until(lambda: proc.hasLogged("core-mux-2 ejected"), what="ejected")
        detected = time.monotonic() - hungAt
        yield load.whenDone(scaled(2000, 10000))
        liftedAt = time.monotonic()
        yield proxy.clear()
        yield until(lambda: proc.hasLogged("core-mux-2 back in rotation"), what="back")
        rejoined = time.monotonic() - liftedAt
        backAt = time.monotonic()
        yield load.whenDone(2000)
        yield load.stop()
    finally:
        (code,) = yield finish(load, [proc], made, [proxy])
    acc = account(load, records(made), proc.log, NAMES, switchTimeout=2.0)
    cost = {k: n for k, n in acc.outcomes.items() if k != "00"}
    assert set(cost) <= {"68"}, cost
    assert sum(cost.values()) <= 16 * 3, cost  # what was in flight there, and 3 to eject it
    after = split(load, sorted(load.between(backAt))[200:])
    assert after["issuer-2"] >= 0.3 * sum(after.values()), after
    assert code == 0 and "Traceback" not in proc.log
    figures.update(acc.figures())
    figures.update(
        {
            "requests it cost": sum(cost.values()),
            "hang to ejected s": round(detected, 2),
            "lifted to back in rotation s": round(rejoined, 2),
            "swallowed bytes": proxy.swallowed,
            "split after return": dict(after),
        }
    )


STRATEGIES = [
    "round-robin",
    "least-pending",
    "least-latency",
    "weighted-round-robin",
    "primary-secondary",
    "split-by-divisor",
    "round-robin-with-override",
]


@pytest_twisted.inlineCallbacks
def test_a_slow_issuer_under_each_strategy(tmp_path, figures):
    """
    One issuer behind 50 ms of added latency, one answering at once: for
    each strategy (a pool and a front server each, in one switch), who gets
    what and the p99.  Nothing fails under any.
    """
    made = issuers(tmp_path, count=2, delay=0)
    proxy = FaultProxy(reactor(), made[1][1], seed=7)
    proxy.startService()
    proxy.latency(0.05, jitter=0.005, direction=DOWNSTREAM)
    proc, _, deploy = switch(tmp_path, [made[0][1], proxy.port], timeout=3000)
    fronts = {}
    for n, strategy in enumerate(STRATEGIES):
        fronts[strategy] = freePort()
        (deploy / f"6{n}_pool-{strategy}.xml").write_text(
            pool(f"pool-{strategy}", ["core-mux-1", "core-mux-2"], strategy)
        )
        (deploy / f"7{n}_front-{strategy}.xml").write_text(
            front(f"front-{strategy}", fronts[strategy], f"pool-{strategy}", timeout=3000)
        )
    per = {}
    loads = []
    try:
        for strategy in STRATEGIES:
            proc.waitFor(f"front-{strategy}: listening")
        for n, strategy in enumerate(STRATEGIES):
            load = yield Load(fronts[strategy], inFlight=16, timeout=4, start=n * 1000000).start()
            loads.append(load)
            yield load.whenDone(scaled(800, 5000))
            yield load.stop()
            proc.poll()  # the switch runs on: its log so far
            acc = account(load, records(made), proc.log, NAMES)
            shares = split(load, list(load.outcomes))
            per[strategy] = {
                "to the slow one": f"{shares['issuer-2'] / acc.sent:.0%}",
                "p99 ms": round(acc.p99 * 1000, 1),
                "failed": acc.sent - acc.outcomes["00"],
            }
    finally:
        for load in loads:
            yield load.stop()
        code = proc.stop()
        yield proxy.stopService()
        stopIssuers(made)
    assert all(p["failed"] == 0 for p in per.values()), per
    # a strategy that weighs latency keeps most traffic off the slow one
    for strategy in ("least-pending", "least-latency"):
        assert int(per[strategy]["to the slow one"][:-1]) < 35, per
    assert code == 0 and "Traceback" not in proc.log
    figures.update(per)


@pytest_twisted.inlineCallbacks
def test_a_link_that_flaps_every_second(tmp_path, figures):
    """
    For 20 s the link to one issuer is reset and refused for half of every
    second, then let back: nothing is answered twice (sent twice), nothing
    is refused for want of a ready member (not sent), and only what was in
    flight at a reset is told unknown.
    """
    made = issuers(tmp_path, count=2, delay=0)
    proxy = FaultProxy(reactor(), made[1][1])
    proxy.startService()
    proc, port, _ = switch(
        tmp_path, [made[0][1], proxy.port], channel="\n  <echo-interval>500</echo-interval>"
    )
    load = yield Load(port, inFlight=16, timeout=4).start()
    flaps = resets = 0
    try:
        yield load.whenDone(500)
        began = time.monotonic()

        def at(second):  # paced by the clock: down half of each second
            return deferLater(reactor(), max(0.0, began + second - time.monotonic()))

        while flaps < 20:
            resets += proxy.reset()
            yield proxy.refuse()
            yield at(flaps + 0.5)
            yield proxy.refuse(False)
            flaps += 1
            yield at(flaps)
        yield load.whenDone(1000)
        yield load.stop()
    finally:
        (code,) = yield finish(load, [proc], made, [proxy])
    acc = account(load, records(made), proc.log, NAMES)
    failed = {k: n for k, n in acc.outcomes.items() if k != "00"}
    assert set(failed) <= {"68"}, failed  # never "not sent" (91)
    assert sum(failed.values()) <= 16 * flaps, failed
    assert resets >= 10
    assert proc.log.count("channel-2: connected") >= 10
    assert code == 0 and "Traceback" not in proc.log
    figures.update(acc.figures())
    figures.update({"flaps": flaps, "connections reset": resets})

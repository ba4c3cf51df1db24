"""
Changing the switch itself under load: its members updated one by one and
its deploy folder rewritten (members added, changed, removed), the switch
restarted, and several switch nodes behind HAProxy rolled.  Zero failed
where the change is planned; the accounting holds everywhere.
"""

import os
import signal
import time
from collections import Counter

import pytest_twisted
from twisted.internet import threads
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from muxpool.channel import ISOChannelProtocol
from tests.cluster import Node, cluster, needsHAProxy, rollEach
from tests.deployfiles import adaptor, freePort, pool, qmux
from tests.e2e import (
    ASCII,
    SIGN_OFF,
    Stubborn,
    checkStubbornAccounted,
    issuers,
    reactor,
    stopIssuers,
    switch,
    until,
)
from tests.reliability.scenario import Load, account, scaled, split
from tests.twistdproc import Twistd, tool


def records(made):
    return [r for _, _, r in made]


@pytest_twisted.inlineCallbacks
def test_rolling_update_of_the_members_and_hot_deploy_fail_nothing(tmp_path, figures):
    """
    Repeatedly, under load: each issuer drained (admin API), stopped,
    started again and enabled; then a third member added by dropping its
    files in, the pool's strategy changed, and the member removed again.
    Every request is answered 00.
    """
    made = issuers(tmp_path, count=3, delay=0)
    admin = freePort()
    adminUrl = f"http://127.0.0.1:{admin}"
    proc, port, deploy = switch(
        tmp_path,
        [p for _, p, _ in made[:2]],
        args=("--admin", f"tcp:{admin}:interface=127.0.0.1"),
    )
    proc.waitFor("admin API on")
    runs = {i: made[i - 1][0] for i in (1, 2, 3)}
    rounds = scaled(2, 5)
    steps = []

    def update(i):
        """
        One member's update, in a thread (it blocks on processes and HTTP).
        """
        drained = tool("drain", f"core-mux-{i}", "--admin", adminUrl, "--timeout", "10")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        assert runs[i].stop() == 0
        readyBefore = proc.countLogged(f"channel-{i}: ready")
        runs[i] = Twistd(tmp_path / f"issuer-{i}", tmp_path)
        proc.waitFor(f"channel-{i}: ready", count=readyBefore + 1)
        enabled = tool("enable", f"core-mux-{i}", "--admin", adminUrl)
        assert enabled.returncode == 0, enabled.stdout + enabled.stderr
        steps.append(f"updated issuer-{i}")

    def hotDeploy(n):
        """
        Add member 3, change the pool, remove member 3: files only.
        """
        third = made[2][1]
        (deploy / "23_channel-3.xml").write_text(adaptor("channel-3", third, "q3"))
        (deploy / "33_core-mux-3.xml").write_text(qmux("core-mux-3", "q3"))
        proc.waitFor("channel-3: ready", count=n)
        three = ["core-mux-1", "core-mux-2", "core-mux-3"]
        (deploy / "40_pool.xml").write_text(pool("core-mux", three))
        proc.waitFor("redeploying core-mux", count=3 * n - 2)
        steps.append("added member 3")
        (deploy / "40_pool.xml").write_text(pool("core-mux", three, "least-pending"))
        proc.waitFor("redeploying core-mux", count=3 * n - 1)
        steps.append("changed the strategy")
        (deploy / "40_pool.xml").write_text(pool("core-mux", three[:2]))
        proc.waitFor("redeploying core-mux", count=3 * n)
        (deploy / "33_core-mux-3.xml").unlink()
        (deploy / "23_channel-3.xml").unlink()
        proc.waitFor("undeploying channel-3", count=n)
        steps.append("removed member 3")

    load = yield Load(port, inFlight=8, timeout=5).start()
    try:
        yield load.whenDone(500)
        for n in range(1, rounds + 1):
            for i in (1, 2):
                yield threads.deferToThread(update, i)
                yield load.whenDone(200)
            yield threads.deferToThread(hotDeploy, n)
            yield load.whenDone(200)
        yield load.stop()
    finally:
        yield load.stop()
        code = proc.stop()
        stopIssuers([(runs[i], None, None) for i in (1, 2, 3)])
    acc = account(load, records(made), proc.log, ["issuer-1", "issuer-2", "issuer-3"])
    assert acc.outcomes == Counter({"00": acc.sent}), acc.outcomes
    assert len(steps) == rounds * 5
    assert code == 0 and "Traceback" not in proc.log
    figures.update(acc.figures())
    figures.update(
        {"rounds": rounds, "changes": len(steps), "split": dict(split(load, list(load.outcomes)))}
    )


@pytest_twisted.inlineCallbacks
def test_a_switch_restarted_under_load(tmp_path, figures):
    """
    SIGTERM the switch under load and start it again: every request it
    read is answered or logged with its key; the clients reconnect and
    carry on; a client that ignores the sign-off loses nothing either.
    """
    made = issuers(tmp_path, count=2, delay=0)
    grace = '\n  <property name="grace-period" value="3000"/>'
    proc, port, deploy = switch(tmp_path, [p for _, p, _ in made], extra=SIGN_OFF + grace)
    runs = [proc]
    stubborn = Stubborn(reactor())  # its STANs count from 1: the load's from 500000
    load = yield Load(port, inFlight=16, timeout=5, start=500000).start()
    try:
        yield TCP4ClientEndpoint(reactor(), "127.0.0.1", port).connect(
            Factory.forProtocol(lambda: ISOChannelProtocol(ASCII, stubborn, reactor()))
        )
        for _ in range(scaled(2, 5)):
            yield load.whenDone(2000)
            old = runs[-1]
            stoppedAt = time.monotonic()
            os.kill(old.process.pid, signal.SIGTERM)
            yield until(lambda old=old: old.process.poll() is not None, what="exit")
            assert old.stop(sig=None) == 0, old.log[-3000:]
            stopping = time.monotonic() - stoppedAt
            runs.append(Twistd(deploy, tmp_path))
            yield until(lambda: runs[-1].hasLogged("front: listening"), what="listening")
            for i in (1, 2):
                yield until(lambda i=i: runs[-1].hasLogged(f"channel-{i}: ready"), what="ready")
            back = time.monotonic() - stoppedAt
            yield load.whenDone(2000)  # the clients reconnected and carry on
        yield load.stop()
    finally:
        yield load.stop()
        if stubborn.protocol is not None:
            stubborn.protocol.transport.abortConnection()
        codes = [r.stop() for r in runs]
        stopIssuers(made)
    log = "".join(r.log for r in runs)
    acc = account(load, records(made), log, ["issuer-1", "issuer-2"])
    # no switch listens for about a second: the clients' pools hold their
    # requests until a connection is back, within their timeout
    assert acc.outcomes == Counter({"00": acc.sent}), acc.outcomes
    assert codes == [0] * len(runs)
    # the stubborn client: each request it wrote answered, or counted after the close
    unanswered, late = checkStubbornAccounted(stubborn, runs[0].log)
    assert stubborn.signOffs == 1 and "Traceback" not in log
    figures.update(acc.figures())
    figures.update(
        {
            "restarts": len(runs) - 1,
            "last stop took s": round(stopping, 2),
            "stop to serving again s": round(back, 2),
            "stubborn client": f"{len(stubborn.written)} written, "
            f"{dict(Counter(stubborn.answers.values()))} answered, {late} after the close",
        }
    )


@needsHAProxy
@pytest_twisted.inlineCallbacks
def test_switch_nodes_behind_haproxy_rolled_under_load(tmp_path, figures):
    """
    Two switch nodes behind Debian's HAProxy (the recipe), each rolled in
    turn, repeatedly, under load from four connections: zero failed.
    """
    made = issuers(tmp_path, count=2, delay=0)
    nodes = [Node(tmp_path, f"node{i}", [p for _, p, _ in made]) for i in (1, 2)]
    balancers, states = [], []
    rounds = scaled(1, 3)
    load = None
    try:
        haproxy = yield cluster(tmp_path, nodes, balancers)
        load = yield Load(haproxy.port, inFlight=16, timeout=5).start()
        yield load.whenDone(1000)
        for _ in range(rounds):
            yield rollEach(haproxy, nodes, states)
        yield load.stop()
    finally:
        if load is not None:
            yield load.stop()
        for node in nodes:
            for proc in node.runs:
                proc.stop()
        if balancers:
            balancers[0].stop()
        stopIssuers(made)
    logs = "".join(proc.log for node in nodes for proc in node.runs)
    acc = account(load, records(made), logs, ["issuer-1", "issuer-2"])
    assert acc.outcomes == Counter({"00": acc.sent}), acc.outcomes
    assert len(states) == 4 * rounds
    figures.update(acc.figures())
    figures.update({"nodes rolled": 2 * rounds})

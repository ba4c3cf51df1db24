"""
A hung issuer, for real: an issuer process stopped with SIGSTOP, whose
kernel still accepts TCP connections (so the link looks up), in a pool with
a healthy one.  The pool takes it out of rotation after a few timeouts, its
echo finds the peer dead, and it comes back once it answers again.
"""

import os
import signal

import pytest_twisted

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.errors import RequestTimeout
from muxpool.link import AdaptorSettings, ChannelAdaptor
from muxpool.mux import QMUX, MUXPool, strategyByName
from tests.deployfiles import freePort, issuer
from tests.twistdproc import Twistd

ISO87B = ChannelSpec.fromConfig("NACChannel", "ISO87B")


def reactor():
    from twisted.internet import reactor

    return reactor


def issuerProcess(tmp_path, name):
    deploy = tmp_path / name
    deploy.mkdir()
    port = freePort()
    (deploy / "10_issuer.xml").write_text(issuer(name, port, name))
    proc = Twistd(deploy, tmp_path)
    try:
        proc.waitFor(f"{name}: listening")
    except BaseException:
        proc.stop()
        raise
    return proc, port


@pytest_twisted.inlineCallbacks
def test_a_hung_issuer_is_taken_out_of_rotation_and_comes_back(tmp_path):
    r = reactor()
    healthy, healthyPort = issuerProcess(tmp_path, "issuer-a")
    try:
        hung, hungPort = issuerProcess(tmp_path, "issuer-b")
    except BaseException:
        healthy.stop()
        raise
    adaptors, muxes = [], []
    for name, port in (("a", healthyPort), ("b", hungPort)):
        adaptor = ChannelAdaptor(
            f"link-{name}",
            ISO87B,
            f"tcp:127.0.0.1:{port}",
            r,
            AdaptorSettings(
                reconnectDelay=0.2, maxReconnectDelay=2.0, echoInterval=0.5, echoTimeout=0.5
            ),
        )
        mux = QMUX(f"mux-{name}", adaptor, r)
        adaptor.startService()
        mux.startService()
        adaptors.append(adaptor)
        muxes.append(mux)
    pool = MUXPool("pool", muxes, r, strategyByName("round-robin"), suspendAfterTimeouts=2)
    pool.startService()
    try:
        for adaptor in adaptors:
            yield adaptor.ready.whenState(True)
        before = yield runLoad(pool, 20, 2, timeout=2)
        assert sorted(o["44"] for o in before) == ["issuer-a"] * 10 + ["issuer-b"] * 10

        os.kill(hung.process.pid, signal.SIGSTOP)
        during = yield runLoad(pool, 200, 4, timeout=0.5, start=1000)
        failed = [o for o in during if not isinstance(o, dict)]
        # the two timeouts that suspend it, plus what was in flight to it then
        assert 2 <= len(failed) <= 6, len(failed)
        assert all(o.check(RequestTimeout) for o in failed), failed
        assert pool.isSuspended(muxes[1]) and pool.counters["suspensions"] == 1
        sentToHung = pool.counters["requests"]["mux-b"]
        assert sentToHung <= 10 + 6
        # the dead peer is detected by its echo (the pool asked for one); the
        # connection is dropped and reconnects back off
        yield adaptors[1].ready.whenState(False)
        assert adaptors[1].counters["echo_failures"] == 1
        assert "echo not answered" in adaptors[1].lastFailure
        assert pool.counters["requests"]["mux-b"] == sentToHung

        os.kill(hung.process.pid, signal.SIGCONT)
        yield adaptors[1].probe()  # fires when the peer answers an echo again
        assert not pool.isSuspended(muxes[1])
        yield adaptors[1].ready.whenState(True)
        after = yield runLoad(pool, 20, 2, timeout=2, start=5000)
        assert all(isinstance(o, dict) for o in after)
        assert pool.counters["requests"]["mux-b"] > sentToHung
    finally:
        if hung.process.poll() is None:
            os.kill(hung.process.pid, signal.SIGCONT)
        yield pool.stopService()
        for mux, adaptor in zip(muxes, adaptors):
            yield mux.stopService()
            yield adaptor.stopService()
        assert [healthy.stop(), hung.stop()] == [0, 0]

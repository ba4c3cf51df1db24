"""
Helpers for integration tests on real loopback sockets.
"""

from twisted.internet import defer

from muxpool.adaptor import ChannelAdaptor
from muxpool.channel import ChannelSpec
from muxpool.listeners import Responder
from muxpool.mux import QMUX
from muxpool.server import QServer


def spec(channel="NACChannel", packager="ISO87A"):
    return ChannelSpec.fromConfig(channel, packager)


@defer.inlineCallbacks
def startServer(reactor, listeners=None, port=0, **kwargs):
    """
    A QServer on 127.0.0.1 (OS-chosen port unless given), started.
    """
    server = QServer(
        kwargs.pop("name", "server"),
        kwargs.pop("spec", None) or spec(),
        f"tcp:{port}:interface=127.0.0.1",
        reactor,
        listeners=listeners if listeners is not None else [Responder()],
        **kwargs,
    )
    yield server.startService()
    return server


def portOf(server):
    return server.port.getHost().port


def startClient(reactor, port, name="client", **kwargs):
    """
    A ChannelAdaptor + QMUX to 127.0.0.1:port, started.
    """
    adaptor = ChannelAdaptor(
        name, kwargs.pop("spec", None) or spec(), f"tcp:127.0.0.1:{port}", reactor,
        reconnectDelay=kwargs.pop("reconnectDelay", 0.05),
        maxReconnectDelay=kwargs.pop("maxReconnectDelay", 0.2),
        **kwargs,
    )
    mux = QMUX(name + "-mux", adaptor, reactor)
    adaptor.startService()
    return adaptor, mux


def whenState(readiness, value):
    """
    A Deferred that fires when C{readiness} becomes C{value} (now if it is).
    """
    d = defer.Deferred()
    if bool(readiness) == value:
        d.callback(value)
        return d

    def observer(v):
        if v == value and not d.called:
            readiness.removeObserver(observer)
            d.callback(v)

    readiness.addObserver(observer)
    return d


def message(i, mti="0200"):
    return {"t": mti, "3": "000000", "4": "%012d" % (i % 100000), "11": "%06d" % (i % 1000000),
            "41": "T%07d" % (i // 1000000)}


@defer.inlineCallbacks
def runLoad(mux, total, inFlight, timeout=10.0, start=0, onEach=None):
    """
    Send C{total} requests with at most C{inFlight} outstanding; return the
    list of outcomes (response dicts or Failures), one per request.
    """
    outcomes = [None] * total
    sem = defer.DeferredSemaphore(inFlight)

    def one(i):
        d = mux.request(message(start + i), timeout)

        def done(result):
            outcomes[i] = result
            if onEach is not None:
                onEach(i, result)

        return d.addBoth(done)

    yield defer.gatherResults([sem.run(one, i) for i in range(total)])
    return outcomes

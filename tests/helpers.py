"""
Test-only helpers; the test doubles embedders can use too live in
L{muxpool.testing}.
"""

import itertools

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from muxpool.channel import ChannelSpec, IChannelOwner, ISOChannelProtocol


@implementer(IChannelOwner)
class RecordingOwner:
    """
    Collects what a channel protocol reports.
    """

    def __init__(self):
        self.messages = []
        self.connected = []
        self.lost = []

    def channelConnected(self, protocol):
        self.connected.append(protocol)

    def channelMessage(self, protocol, message):
        self.messages.append(message)

    def channelIdle(self, protocol):
        return True

    def channelUndecodable(self, protocol, why):
        pass

    def channelSecured(self, protocol):
        pass

    def channelLost(self, protocol, reason):
        self.lost.append(reason)


def connectedProtocol(spec: ChannelSpec, owner=None, clock=None):
    """
    A channel protocol on a StringTransport, connected.
    """
    owner = owner or RecordingOwner()
    protocol = ISOChannelProtocol(spec, owner, clock or Clock())
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, owner


def started(service):
    """
    C{service}, started (a QMUX or pool holds nothing until it is).
    """
    service.startService()
    return service


def whenInFlight(server, n):
    """
    Fires once the server holds C{n} unanswered requests (checked on each
    message the server receives, not by polling).
    """
    d = defer.Deferred()
    original = server.channelMessage

    def channelMessage(protocol, message):
        original(protocol, message)
        if server.inFlight() >= n and not d.called:
            server.channelMessage = original
            d.callback(None)

    server.channelMessage = channelMessage
    return d


class _Transport(iosim.FakeTransport):
    """
    iosim's FakeTransport, with TCP's half-close as Twisted delivers it to
    a peer that is not half-closeable (none of ours is): the peer reads
    end-of-file and the connection closes.  iosim's does nothing.
    """

    def loseWriteConnection(self):
        self.loseConnection()


class _Listening:
    """
    What L{_NetworkReactor.listenTCP} returns: a port that stops taking
    connections when told to (MemoryReactor's own never stops).
    """

    def __init__(self, reactor, entry, address):
        self._reactor = reactor
        self._entry = entry
        self._address = address

    def startListening(self):
        pass

    def stopListening(self):
        if self._entry in self._reactor.tcpServers:
            self._reactor.tcpServers.remove(self._entry)

    def getHost(self):
        return self._address


class _NetworkReactor(MemoryReactorClock):
    """
    A MemoryReactorClock whose TCP ports behave as the OS's do for
    L{MemoryNetwork}: one listener per port at a time, until it stops.
    """

    def listenTCP(self, port, factory, backlog=50, interface=""):
        if any(entry[0] == port for entry in self.tcpServers):
            raise error.CannotListenError(interface, port, OSError(98, "Address already in use"))
        MemoryReactorClock.listenTCP(self, port, factory, backlog, interface)
        entry = self.tcpServers[-1]
        return _Listening(self, entry, IPv4Address("TCP", interface or "0.0.0.0", port))


class MemoryNetwork:
    """
    Real client and server protocols joined in memory, deterministic and
    fast: every C{listenTCP} and C{connectTCP} made on L{reactor} (a
    C{MemoryReactorClock}) is paired by port with C{twisted.test.iosim}, as
    C{treq.testing} pairs an agent with a resource.  A connection to a port
    nobody listens on is refused; a server factory that builds no protocol
    closes the connection at once, as a listening socket does.  Nothing
    moves until L{flush} or L{wait}; time is L{reactor}'s, and passes only
    in L{wait}.

    For what only real sockets show (kernel buffers and backpressure, TLS
    over TCP, the peer address the OS reports, other processes), use
    L{muxpool.testing.startIssuer} with the real reactor.

    Its limits: TCP only (C{connectTCP} and C{listenTCP}; nothing else may
    connect on its reactor), listeners are matched by port alone, a port
    cannot be handed over to another server (a redeploy's takeover), and
    a half-close closes the whole connection (the real half-close of a
    planned stop is exercised by the end-to-end tests).
    """

    def __init__(self):
        self.reactor = _NetworkReactor()
        self._pumps = []
        self._clientPorts = itertools.count(40000)

    def flush(self):
        """
        Complete connection attempts, move bytes both ways and run what is
        due now, until nothing moves.
        """
        reactor = self.reactor
        while True:
            reactor.advance(0)
            moved = self._connectPending()
            for pump in list(self._pumps):
                moved = pump.pump(advanceClock=False) or moved
                if pump.clientIO.disconnected and pump.serverIO.disconnected:
                    self._pumps.remove(pump)
            due = any(call.getTime() <= reactor.seconds() for call in reactor.getDelayedCalls())
            if not (moved or due or reactor.tcpClients):
                return

    def _connectPending(self):
        reactor = self.reactor
        moved = False
        while reactor.tcpClients:
            host, port, clientFactory, _, _ = reactor.tcpClients.pop(0)
            connector = reactor.connectors.pop(0)
            moved = True
            if connector.stoppedConnecting:
                continue  # given up (the endpoint's Deferred was cancelled)
            listening = [entry[1] for entry in reactor.tcpServers if entry[0] == port]
            if not listening:
                clientFactory.clientConnectionFailed(
                    connector, Failure(error.ConnectionRefusedError())
                )
                continue
            clientAddress = IPv4Address("TCP", "127.0.0.1", next(self._clientPorts))
            serverAddress = IPv4Address("TCP", host, port)
            serverProtocol = listening[0].buildProtocol(clientAddress)
            refused = serverProtocol is None
            if refused:
                serverProtocol = Protocol()  # the socket is accepted, then closed
            clientProtocol = clientFactory.buildProtocol(serverAddress)
            serverTransport = _Transport(serverProtocol, True, serverAddress, clientAddress)
            clientTransport = _Transport(clientProtocol, False, clientAddress, serverAddress)
            pump = iosim.connect(
                serverProtocol,
                serverTransport,
                clientProtocol,
                clientTransport,
                greet=False,
                clock=reactor,
            )
            if refused:
                serverTransport.loseConnection()
            self._pumps.append(pump)
        return moved

    def wait(self, d, limit=600.0):
        """
        Let time pass until C{d} fires, stopping at each delayed call (so
        each runs at its time) and flushing after each; return C{d}'s
        result or raise its failure.

        @param limit: fail the test if C{d} has not fired after this many
            seconds of the reactor's time.
        """
        reactor = self.reactor
        end = reactor.seconds() + limit
        results = []
        d.addBoth(results.append)
        self.flush()
        while not results:
            due = [call.getTime() for call in reactor.getDelayedCalls()]
            assert due and min(due) <= end, f"{d!r} did not fire within {limit:g}s"
            reactor.advance(max(0.0, min(due) - reactor.seconds()))
            self.flush()
        [result] = results
        if isinstance(result, Failure):
            result.raiseException()
        return result


class Started:
    """
    What a test starts over real sockets with the testing kit (issuers by
    L{startIssuer}, links by L{startLink}, pools...), stopped in reverse
    order by L{stop}.
    """

    def __init__(self, reactor, spec):
        self.reactor = reactor
        self.spec = spec
        self.services = []

    def __call__(self, service):
        service.startService()
        self.services.append(service)
        return service

    @defer.inlineCallbacks
    def server(self, name, listener, **settings):
        """
        A listening server answering with C{listener} (L{ServerSettings} as
        keywords; no grace period unless given).
        """
        from muxpool.testing import startIssuer

        settings.setdefault("gracePeriod", 0)
        server = yield startIssuer(self.reactor, [listener], spec=self.spec, name=name, **settings)
        self.services.append(server)
        return server

    @defer.inlineCallbacks
    def link(self, name, server, **mux):
        """
        A ready link to C{server}, its QMUX C{NAME-mux} built with C{mux}.
        """
        from muxpool.testing import portOf, startLink

        link = startLink(self.reactor, portOf(server), name, spec=self.spec, mux=mux)
        self.services += [link.adaptor, link.mux]
        yield link.whenReady()
        return link

    @defer.inlineCallbacks
    def stop(self):
        for service in reversed(self.services):
            if service.running:
                yield service.stopService()

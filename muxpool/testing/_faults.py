"""
A TCP proxy that injects faults, switched on and off while it runs: the
set Toxiproxy offers (latency with jitter, bandwidth, a blackhole, reset,
a limit on bytes, sliced writes, refused connections), as a Twisted
service a test puts between any two parties.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple, cast

from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

#: Client to server, as Toxiproxy names it.
UPSTREAM = "upstream"
#: Server to client.
DOWNSTREAM = "downstream"
BOTH = (UPSTREAM, DOWNSTREAM)


#: Bytes held for one direction of a connection above which its writer is
#: no longer read (until half of it is written on).
HIGH_WATER = 64 * 1024


@dataclass
class Faults:
    """
    The faults on one direction of every connection; each takes effect on
    the next bytes read, on connections open and new alike.

    @ivar latency: seconds each chunk is held before it is written.
    @ivar jitter: up to this many seconds more or less, at random.
    @ivar rate: bytes per second at most (None: no limit).
    @ivar blackhole: read and drop everything (the reader's kernel still
        acknowledges it, so the writer sees a peer that never answers).
    @ivar sliceSize: write in pieces of at most this many bytes...
    @ivar sliceDelay: ...this many seconds apart.
    @ivar closeAfter: close the connection once this many bytes have
        passed this way on it (None: never).
    """

    latency: float = 0.0
    jitter: float = 0.0
    rate: Optional[float] = None
    blackhole: bool = False
    sliceSize: Optional[int] = None
    sliceDelay: float = 0.0
    closeAfter: Optional[int] = None


class _Pipe:
    """
    One direction of one connection: chunks are held until their time,
    written in the order read.
    """

    def __init__(self, proxy: FaultProxy, direction: str, connection: _Connection) -> None:
        self.proxy = proxy
        self.direction = direction
        self.connection = connection
        self.target: Optional[Any] = None  # the transport written to, once connected
        self.queue: List[Tuple[float, bytes]] = []
        self.lastAt = 0.0
        self.busyUntil = 0.0
        self.passed = 0
        self.timer: Optional[IDelayedCall] = None
        self.closing = False
        self.queued = 0  # bytes held
        self.paused = False  # the reading side, while too much is held

    def push(self, data: bytes) -> None:
        faults = self.proxy.faults[self.direction]
        if faults.blackhole:
            self.proxy.swallowed[self.direction] += len(data)
            return
        if self.closing:
            return  # past the limit: nothing more passes
        if faults.closeAfter is not None:
            data = data[: max(0, faults.closeAfter - self.passed)]
            self.passed += len(data)
            if self.passed >= faults.closeAfter:
                self.closing = True  # closed once what passed is written
        else:
            self.passed += len(data)
        now = self.proxy.reactor.seconds()
        size = faults.sliceSize or len(data) or 1
        for start in range(0, len(data), size):
            piece = data[start : start + size]
            at = now + faults.latency
            if faults.jitter:
                at += self.proxy.random.uniform(-faults.jitter, faults.jitter)
            if faults.sliceSize and self.lastAt:  # pieces apart, across reads too
                at = max(at, self.lastAt + faults.sliceDelay)
            if faults.rate:
                at = max(at, self.busyUntil) + len(piece) / faults.rate
                self.busyUntil = at
            at = max(at, self.lastAt, now)
            self.lastAt = at
            self.queue.append((at, piece))
            self.queued += len(piece)
        if self.queued > HIGH_WATER and not self.paused:
            # a slow or limited direction slows its writer, as TCP would
            self.paused = True
            self._reader().pauseProducing()
        self.flush()

    def flush(self) -> None:
        if self.target is None:
            return  # the server side is still connecting
        now = self.proxy.reactor.seconds()
        while self.queue and self.queue[0][0] <= now:
            _, piece = self.queue.pop(0)
            self.queued -= len(piece)
            self.target.write(piece)
            self.proxy.relayed[self.direction] += len(piece)
        if self.paused and self.queued < HIGH_WATER // 2:
            self.paused = False
            self._reader().resumeProducing()
        if self.queue and (self.timer is None or not self.timer.active()):
            self.timer = self.proxy.reactor.callLater(self.queue[0][0] - now, self._due)
        if not self.queue:
            if self.closing:
                self.connection.end()
            else:
                self.connection.flushed()

    def _reader(self) -> Any:
        # the side whose bytes this pipe carries: it exists, it sent them
        side = self.connection.client if self.direction == UPSTREAM else self.connection.server
        assert side is not None
        return cast(Any, side.transport)

    def _due(self) -> None:
        self.timer = None
        self.flush()

    def stop(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.queue.clear()


class _Side(protocol.Protocol):
    """
    One socket of a proxied connection (the client's or the server's).
    """

    def __init__(self, connection: _Connection, direction: str) -> None:
        self.connection = connection
        self.direction = direction  # the direction of what it reads

    def dataReceived(self, data: bytes) -> None:
        self.connection.pipes[self.direction].push(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.connection.sideLost(self)


class _Connection:
    """
    A client's connection and the proxy's own to the server.
    """

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client: _Side = _ClientSide(self, UPSTREAM)
        self.server: Optional[_Side] = None
        self.pipes = {d: _Pipe(proxy, d, self) for d in BOTH}
        self.ending = False
        self.closeOnFlush = False
        self.connector: Optional[Any] = None

    def serverConnected(self, side: _Side) -> None:
        self.server = side
        self.pipes[UPSTREAM].target = side.transport
        self.pipes[DOWNSTREAM].target = self.client.transport
        if self.ending:
            self.end()
            return
        cast(Any, self.client.transport).resumeProducing()
        self.pipes[UPSTREAM].flush()

    def closeWhenFlushed(self) -> None:
        self.closeOnFlush = True

    def flushed(self) -> None:
        if self.closeOnFlush and not any(p.queue for p in self.pipes.values()):
            self.end()

    def sideLost(self, side: _Side) -> None:
        if self.ending:
            self.proxy._forget(self)
            return
        other = self.server if side is self.client else self.client
        pipe = self.pipes[side.direction]
        if other is not None and other.transport is not None and pipe.queue:
            # what was read before the close is still owed to the other side
            self.closeOnFlush = True
            return
        self.end()

    def end(self, abort: bool = False) -> None:
        """
        Close both sockets (with a TCP reset if C{abort}).
        """
        self.ending = True
        connector = self.connector
        if self.server is None and connector is not None and connector.state == "connecting":
            connector.stopConnecting()  # not connected yet: never will be
        for pipe in self.pipes.values():
            pipe.stop()
        for side in (self.client, self.server):
            transport = side.transport if side is not None else None
            if transport is None:
                continue
            if abort:  # Twisted's abort sets SO_LINGER 0: the peer sees a reset
                transport.abortConnection()  # type: ignore[attr-defined]
            else:
                transport.loseConnection()
        self.proxy._forget(self)


class _ServerSide(_Side):
    def connectionMade(self) -> None:
        self.connection.serverConnected(self)


class _ServerFactory(protocol.ClientFactory):
    def __init__(self, connection: _Connection) -> None:
        self.connection = connection

    def buildProtocol(self, addr: Any) -> _ServerSide:
        return _ServerSide(self.connection, DOWNSTREAM)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        proxy = self.connection.proxy
        proxy._log.info(
            "{proxy}: cannot reach {host}:{port}: {why}",
            proxy=proxy.name,
            host=proxy.host,
            port=proxy.upstreamPort,
            why=reason.getErrorMessage(),
        )
        self.connection.end(abort=True)


class _ClientSide(_Side):
    def connectionMade(self) -> None:
        # nothing is read until the server side is connected
        cast(Any, self.transport).pauseProducing()
        proxy = self.connection.proxy
        self.connection.connector = proxy.reactor.connectTCP(
            proxy.host, proxy.upstreamPort, _ServerFactory(self.connection), timeout=5
        )


class _ClientFactory(protocol.Factory):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        connection = _Connection(self.proxy)
        self.proxy._open.add(connection)
        self.proxy.accepted += 1
        return connection.client


class FaultProxy(Service):
    """
    A TCP proxy on 127.0.0.1 to C{host:port}, with faults switched on and
    off while it runs.  Start it (C{startService}), point a party at
    L{port}, and call the fault methods at any time; L{clear} lifts them
    all.  Faults take a C{direction}: L{UPSTREAM} (client to server),
    L{DOWNSTREAM}, or both (the default)::

        proxy = FaultProxy(reactor, issuerPort)
        proxy.startService()
        yield proxy.whenListening()
        ... connect to proxy.port ...
        proxy.blackhole()        # a hung issuer: bytes read, never answered
        proxy.latency(0.2, jitter=0.05, direction=DOWNSTREAM)
        proxy.reset()            # every open connection, with a TCP RST
        proxy.refuse()           # new connections refused (port closed)
        proxy.clear()

    @ivar accepted: connections accepted so far.
    @ivar relayed: bytes written on, per direction.
    @ivar swallowed: bytes dropped by a blackhole, per direction.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        upstreamPort: int,
        host: str = "127.0.0.1",
        *,
        port: int = 0,
        interface: str = "127.0.0.1",
        seed: Optional[int] = None,
        name: str = "fault-proxy",
    ) -> None:
        """
        @param reactor: an C{IReactorTCP} and C{IReactorTime}.
        @param upstreamPort: the port of the party proxied to, on C{host}.
        @param port: the port to listen on (0: the OS chooses).
        @param seed: for the jitter, to repeat a run.
        """
        self.reactor = reactor
        self.host = host
        self.upstreamPort = upstreamPort
        self.interface = interface
        self.name = name
        self.port = port
        self.random = random.Random(seed)
        self.faults: Dict[str, Faults] = {d: Faults() for d in BOTH}
        self.accepted = 0
        self.relayed = {d: 0 for d in BOTH}
        self.swallowed = {d: 0 for d in BOTH}
        self._open: Set[_Connection] = set()
        self._listening: Optional[IListeningPort] = None
        self._closing: Deferred = succeed(None)
        self._refusing = False

    # -- the service

    def startService(self) -> None:
        super().startService()
        if not self._refusing:
            self._listen()

    def stopService(self) -> Deferred:
        super().stopService()
        for connection in list(self._open):
            connection.end(abort=True)
        return self._unlisten()

    def whenListening(self) -> Deferred:
        """
        Fires with the port once the proxy listens (it does from
        C{startService} on).
        """
        return succeed(self.port)

    @property
    def connections(self) -> int:
        """
        How many proxied connections are open.
        """
        return len(self._open)

    def held(self, direction: str) -> int:
        """
        Bytes read and not yet written on, that way, over every connection.
        """
        return sum(c.pipes[direction].queued for c in self._open)

    def _listen(self) -> None:
        self._listening = self.reactor.listenTCP(
            self.port, _ClientFactory(self), interface=self.interface
        )
        self.port = cast(IPv4Address, self._listening.getHost()).port

    def _unlisten(self) -> Deferred:
        listening, self._listening = self._listening, None
        if listening is None:
            return self._closing
        stopped = listening.stopListening()
        # the port is free once this fires: listening again waits for it
        self._closing = stopped if isinstance(stopped, Deferred) else succeed(None)
        return self._closing

    def _forget(self, connection: _Connection) -> None:
        self._open.discard(connection)

    # -- the faults

    def _set(self, direction: Optional[str], **values: Any) -> None:
        for d in BOTH if direction is None else (direction,):
            if d not in BOTH:
                raise ValueError(f"direction must be {UPSTREAM!r} or {DOWNSTREAM!r}, not {d!r}")
            for name, value in values.items():
                setattr(self.faults[d], name, value)

    def latency(self, seconds: float, jitter: float = 0.0, direction: Optional[str] = None) -> None:
        """
        Hold each chunk C{seconds} (plus or minus up to C{jitter}) before
        writing it on; order is kept.
        """
        self._set(direction, latency=seconds, jitter=jitter)

    def bandwidth(self, bytesPerSecond: Optional[float], direction: Optional[str] = None) -> None:
        """
        Write at most C{bytesPerSecond} (None lifts the limit).
        """
        self._set(direction, rate=bytesPerSecond)

    def blackhole(self, on: bool = True, direction: Optional[str] = None) -> None:
        """
        Read and drop everything: the writer's bytes are acknowledged by
        the kernel and never answered, as by a hung peer.
        """
        self._set(direction, blackhole=on)

    def slice(
        self, size: Optional[int], delay: float = 0.0, direction: Optional[str] = None
    ) -> None:
        """
        Write in pieces of at most C{size} bytes, C{delay} seconds apart
        (None: whole).
        """
        self._set(direction, sliceSize=size, sliceDelay=delay)

    def closeAfter(self, nbytes: Optional[int], direction: Optional[str] = None) -> None:
        """
        Close a connection once C{nbytes} have passed on it this way (the
        first C{nbytes} are delivered); None lifts it.
        """
        self._set(direction, closeAfter=nbytes)

    def reset(self) -> int:
        """
        Reset every open connection now (a TCP RST on both sockets);
        return how many there were.
        """
        open_ = list(self._open)
        for connection in open_:
            connection.end(abort=True)
        return len(open_)

    def refuse(self, on: bool = True) -> Deferred:
        """
        Refuse new connections (stop listening: a connect is refused by the
        kernel) or, with C{on} false, accept them again on the same port.
        Open connections carry on.
        """
        self._refusing = on
        if on:
            return self._unlisten()
        done: Deferred = Deferred()

        def listenAgain(result: object) -> object:
            if self._listening is None and self.running and not self._refusing:
                self._listen()
            done.callback(None)
            return result

        self._closing.addBoth(listenAgain)
        return done

    def clear(self) -> Deferred:
        """
        Lift every fault.
        """
        self.faults = {d: Faults() for d in BOTH}
        return self.refuse(False)

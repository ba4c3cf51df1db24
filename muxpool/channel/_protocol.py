"""
The channel protocol: a framing, a packager and a header on one connection.

L{ISOChannelProtocol} is a Twisted protocol that turns the byte stream into
message dicts and back, as its L{ChannelSpec} says, and reports them to its
owner, an L{IChannelOwner} (a ChannelAdaptor, or a QServer).  Bad input
never escapes C{dataReceived}: a bad length prefix closes that connection,
an undecodable frame is logged (masked) and counted, and the connection
stays up.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from muxpool._config import hostPort
from muxpool._support import RateLimiter, cancelTimer, describeError
from muxpool.channel._spec import HEADER_KEY, ChannelSpec
from muxpool.channel._writes import batching, sendFrame
from muxpool.iso import KEEPALIVE, FramingError, UnpackError, maskMessage


class IChannelOwner(Interface):
    """
    What a channel protocol reports to: the link that owns the connection
    (a ChannelAdaptor, or a QServer).
    """

    def channelConnected(protocol: "ISOChannelProtocol") -> None:
        """
        C{protocol}'s connection is up.
        """

    def channelMessage(protocol: "ISOChannelProtocol", message: Dict[str, str]) -> None:
        """
        C{protocol} decoded C{message} (a dict; C{"h"} holds the header, in
        hex, when the framing carries one).
        """

    def channelLost(protocol: "ISOChannelProtocol", reason: Optional[Failure]) -> None:
        """
        C{protocol}'s connection is gone (C{reason} a Failure).
        """

    def channelSecured(protocol: "ISOChannelProtocol") -> None:
        """
        The TLS handshake on C{protocol}'s connection is done and the peer
        accepted it (only for connections the owner wrapped in TLS): for a
        TLS 1.3 client, once the server sent a record after the handshake
        without refusing its certificate.
        """

    def channelIdle(protocol: "ISOChannelProtocol") -> bool:
        """
        C{protocol} received nothing for its idle timeout (see
        C{ISOChannelProtocol.setTimeouts}): may it be closed?  An owner still
        owing answers on it says no.
        """

    def channelUndecodable(protocol: "ISOChannelProtocol", why: str) -> None:
        """
        A frame from C{protocol}'s peer could not be decoded (C{why}: its
        field and offset, never its bytes), after it was counted and
        logged; or could not be framed (a length beyond max-packet-length),
        and the connection is closed after this.  A server goes on reading
        a client whose frame did not decode; a link to an issuer
        drops the connection, as jPOS's channels do: its stream may be out
        of step, and every answer after it lost.
        """


@implementer(IHandshakeListener)
class ISOChannelProtocol(Protocol):
    """
    One ISO 8583 connection.  Reports to C{owner} (an L{IChannelOwner}).

    Its owner can hold frames (L{holdFrames}: bytes already read stay
    buffered, undecoded, until L{releaseFrames}) and set two timeouts
    (L{setTimeouts}): a frame that started and did not finish in time closes
    the connection, and so does silence, when the owner agrees
    (L{IChannelOwner.channelIdle}).

    @ivar counters: C{rx}, C{tx}, C{rx_bad} (frames that did not decode),
        C{rx_keepalive}.
    @ivar lastReceived: clock time of the last bytes received (for idle checks).
    @ivar partialSince: clock time the unfinished frame in the buffer started
        to arrive, or None.
    @ivar secured: whether TLS on this connection is up and the peer accepted it.
    """

    log = Logger()
    #: A TCP, UNIX or TLS transport: an ITransport that is also a consumer
    #: and a producer, with abortConnection; no one Twisted interface says
    #: all that.
    transport: Any

    def __init__(
        self,
        spec: ChannelSpec,
        owner: IChannelOwner,
        clock: IReactorTime,
        limiter: Optional[RateLimiter] = None,
    ) -> None:
        """
        @param limiter: bounds the rate of its warnings; a server gives all
            its connections one, so many connections cannot multiply them.
        """
        self.spec = spec
        self.owner = owner
        self.clock = clock
        self._buffer = bytearray()
        self._closing = False
        self._held = False
        self._processing = False
        self._discarding = False
        self.closeTimeout = 5.0
        self.counters = {"rx": 0, "tx": 0, "rx_bad": 0, "rx_keepalive": 0}
        self.lastReceived = self.lastSent = clock.seconds()
        self.partialSince: Optional[float] = None
        self.secured = False
        self.idleTimeout: Optional[float] = None
        self.frameTimeout: Optional[float] = None
        self._idleTimer: Optional[IDelayedCall] = None
        self._closeTimer: Optional[IDelayedCall] = None
        self._frameTimer: Optional[IDelayedCall] = None
        self._limiter = limiter if limiter is not None else RateLimiter(clock=clock)

    @property
    def peer(self) -> str:
        try:
            return hostPort(self.transport.getPeer())
        except Exception:
            return "?"

    def connectionMade(self) -> None:
        self.lastReceived = self.lastSent = self.clock.seconds()
        self.owner.channelConnected(self)

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done: tell the owner once the peer accepted
        the session too (see L{wrapTLS}), for a TLS 1.3 server may still
        refuse the client's certificate.
        """
        whenAccepted = getattr(self.transport, "whenAccepted", None)
        if whenAccepted is None:
            self._accepted()
        else:
            whenAccepted(self._accepted)

    def _accepted(self) -> None:
        if self.connected and not self._closing:
            self.secured = True
            self.owner.channelSecured(self)

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        self.connected = False
        self._closing = True
        self._cancelTimers()
        self.owner.channelLost(self, reason)

    def close(self, why: str) -> None:
        """
        Drop this connection (and only it) because of C{why}, logged once
        with the peer's address.
        """
        if not self._closing:
            self._closing = True
            self._cancelTimers()
            self.log.warn(
                "{framing} connection from {peer} closed: {why}",
                framing=self.spec.framing.name,
                peer=self.peer,
                why=why,
            )
            self.finish()

    def finish(self) -> None:
        """
        Close after what was written is sent; a peer that will not take it
        (it does not read) is cut off after C{closeTimeout} seconds, so it
        cannot hold its slot by not reading.
        """
        self.dropProducer()
        self.transport.loseConnection()
        self._closeTimer = self.clock.callLater(self.closeTimeout, self._abort)

    def dropProducer(self) -> None:
        """
        Unregister the transport's producer, if it has one: a TLS
        transport does not close while one is registered.
        """
        try:
            self.transport.unregisterProducer()
        except Exception:
            pass  # none was registered

    def _abort(self) -> None:
        self._closeTimer = None
        if self.connected:
            self.transport.abortConnection()

    # -- timeouts -------------------------------------------------------------

    def setTimeouts(self, idle: Optional[float], frame: Optional[float]) -> None:
        """
        Close the connection after C{idle} seconds with nothing received
        (if the owner agrees), or C{frame} seconds after a frame started to
        arrive and did not finish.  None: no such timeout.
        """
        self.idleTimeout = idle or None
        self.frameTimeout = frame or None
        self._armIdle(self.lastReceived)

    def _armIdle(self, since: float) -> None:
        self._idleTimer = cancelTimer(self._idleTimer)
        if self.idleTimeout and not self._closing:
            delay = max(0.0, since + self.idleTimeout - self.clock.seconds())
            self._idleTimer = self.clock.callLater(delay, self._idleCheck)

    def _idleCheck(self) -> None:
        # Lazy: data received since arming only moves the next check.
        self._idleTimer = None
        assert self.idleTimeout is not None  # armed only with one (_armIdle)
        now = self.clock.seconds()
        if now - self.lastReceived < self.idleTimeout:
            self._armIdle(self.lastReceived)
        elif self.owner.channelIdle(self):
            # Nothing came for that long, or nothing was read because the
            # peer does not read its answers: either way, owed nothing, it goes.
            self.close(f"idle: nothing received for {self.idleTimeout:g}s")
        else:
            self._armIdle(now)

    def _partial(self, restarted: bool) -> None:
        """
        Note whether an unfinished frame is in the buffer, and time it from
        when it started (C{restarted}: a whole frame was just taken, so what
        is left started now).
        """
        pending = bool(self._buffer) and not self._closing and not self._held
        if not pending or restarted:
            self.partialSince = None
            self._frameTimer = cancelTimer(self._frameTimer)
        if pending and self.partialSince is None:
            self.partialSince = self.clock.seconds()
            if self.frameTimeout:
                self._frameTimer = self.clock.callLater(self.frameTimeout, self._frameExpired)

    def _frameExpired(self) -> None:
        self._frameTimer = None
        if self.partialSince is not None and not self._held:
            self.close(
                f"a frame started {self.clock.seconds() - self.partialSince:g}s ago "
                f"was not finished (frame timeout {self.frameTimeout:g}s)"
            )

    def _cancelTimers(self) -> None:
        self._idleTimer = cancelTimer(self._idleTimer)
        self._frameTimer = cancelTimer(self._frameTimer)
        self._closeTimer = cancelTimer(self._closeTimer)

    # -- frames -----------------------------------------------------------------

    def discardInput(self) -> None:
        """
        From now on, drop what arrives, the rest of what is being decoded
        included (the connection is being closed: no request is taken any
        more, but the socket is still read).
        """
        self._discarding = True
        self._buffer = bytearray()

    @property
    def discarding(self) -> bool:
        """
        Whether what arrives is dropped (see L{discardInput}).
        """
        return self._discarding

    def holdFrames(self) -> None:
        """
        Decode no more frames until L{releaseFrames}: the owner wants no
        more requests for now (bytes already read stay buffered).
        """
        self._held = True
        self.partialSince = None
        self._frameTimer = cancelTimer(self._frameTimer)

    def releaseFrames(self) -> None:
        """
        Decode what was held, and go on.
        """
        if self._held:
            self._held = False
            if not self._processing:  # else the loop under way goes on by itself
                self._processBuffer()

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._discarding:
            return
        self.lastReceived = self.clock.seconds()
        if self._held or self._buffer:
            self._buffer += data
            if not self._held:
                self._processBuffer(self._buffer)
        else:
            # Frames are cut from data itself (one slice each); only what is
            # left of a partial frame goes to the buffer.
            self._processBuffer(data)

    def _processBuffer(self, buffer: Union[bytes, bytearray, None] = None) -> None:
        """
        Decode the whole frames in C{buffer} (the pending buffer, or bytes
        just received with nothing pending), until held; keep the rest.
        """
        if buffer is None:
            buffer = self._buffer
        framing = self.spec.framing
        maxLength = self.spec.maxPacketLength
        offset = 0
        batch = False  # more than one frame: what they cause is written in one batch
        # Never twice at once: answering a request may release a hold, and
        # the frames already taken must not be decoded (and sent on) again.
        self._processing = True
        try:
            while (
                offset < len(buffer)
                and not self._closing
                and not self._held
                and not self._discarding
            ):
                found = framing.nextFrame(buffer, offset, maxLength)
                if found is None:
                    break
                frame, offset = found
                if not batch and offset < len(buffer):
                    batch = True
                    batching.begin()
                if frame is KEEPALIVE:  # a zero-length frame
                    self.counters["rx_keepalive"] += 1
                    continue
                self._frameReceived(frame)
        except FramingError as e:
            # Counted and told as a frame that did not decode (a link drops
            # and reconnects on it, counting it), then closed, logged once.
            self.counters["rx_bad"] += 1
            self.owner.channelUndecodable(self, str(e))
            self.close(str(e))
            del self._buffer[:]
            return
        finally:
            self._processing = False
            if batch:
                batching.end()
        if self._discarding:
            return  # what is left of it is dropped too
        if buffer is self._buffer:
            del buffer[:offset]
        elif offset < len(buffer):
            self._buffer += memoryview(buffer)[offset:]
        self._partial(offset > 0)

    def _frameReceived(self, frame: bytes) -> None:
        spec = self.spec
        headerLength = spec.headerLength(frame)
        if headerLength > len(frame):
            self._bad("frame shorter than its header")
            return
        try:
            message = spec.decode(frame[headerLength:])
        except UnpackError as e:
            self._bad(str(e))
            return
        if headerLength:
            message[HEADER_KEY] = frame[:headerLength].hex().upper()
        self.counters["rx"] += 1
        try:
            self.owner.channelMessage(self, message)
        except Exception as e:
            self.log.error(
                "handler for {framing} message from {peer} failed on {message}: {error}",
                framing=spec.framing.name,
                peer=self.peer,
                message=maskMessage(message, spec.packager.binaryFields),
                error=describeError(e),
            )

    def _bad(self, why: str) -> None:
        self.counters["rx_bad"] += 1
        self._limiter.emit(
            self.log.warn,
            "bad frame",
            "undecodable {framing} frame from {peer} ({packager}): {why}",
            framing=self.spec.framing.name,
            peer=self.peer,
            packager=self.spec.packager.name,
            why=why,
        )
        self.owner.channelUndecodable(self, why)

    def sendMessage(self, message: Mapping[str, str]) -> None:
        """
        Pack, frame and write C{message}.

        @raise PackError: nothing was written.
        """
        data = self.spec.encode(message)
        sendFrame(self.transport, data)
        self.counters["tx"] += 1
        self.lastSent = self.clock.seconds()

    def sendKeepAlive(self) -> None:
        """
        Write a zero-length frame.
        """
        sendFrame(self.transport, self.spec.framing.keepAlive())
        self.lastSent = self.clock.seconds()

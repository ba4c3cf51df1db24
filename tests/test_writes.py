"""
How frames reach the socket: a frame that travels alone is sent at once;
what a read of several frames causes is gathered per connection and sent in
one C{send} when that read is handled; what the socket does not take is
buffered, and the order of the bytes is kept.
"""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.abstract import FileDescriptor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport

from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.iso import responseMTI, sampleRequest
from tests.e2e import reactor, until
from tests.helpers import RecordingOwner, connectedProtocol
from tests.logcapture import capturedText

SPEC = ChannelSpec.fromConfig("NACChannel", "ISO87A")


class SocketTransport(StringTransport, FileDescriptor):
    """
    A StringTransport with what the channel reads of Twisted's socket
    transports: their buffers and C{writeSomeData}, on a socket with room
    for C{room} bytes.  C{value()} holds every byte in the order written.
    """

    def __init__(self, room=1 << 30):
        StringTransport.__init__(self)
        self.room = room
        self.dataBuffer = b""
        self._tempDataLen = 0  # what transport.write holds for the next turn
        self._writeDisconnected = False
        self.connected = True
        self.disconnecting = False
        self.atOnce = []

    def writeSomeData(self, data):
        taken = bytes(data[: self.room])
        self.room -= len(taken)
        self.atOnce.append(taken)
        self.io.write(taken)
        return len(taken)

    def write(self, data):
        self._tempDataLen += len(data)
        StringTransport.write(self, data)


class Echo(RecordingOwner):
    """
    Answers each message on its protocol with its 0x10 response.
    """

    @staticmethod
    def answer(message):
        return {"t": responseMTI(message["t"]), "11": message["11"], "39": "00"}

    def channelMessage(self, protocol, message):
        protocol.sendMessage(self.answer(message))


def echoing(transport):
    protocol = ISOChannelProtocol(SPEC, Echo(), Clock())
    protocol.makeConnection(transport)
    return protocol


def answers(data):
    peer, _, owner = connectedProtocol(SPEC)
    peer.dataReceived(data)
    return [m["11"] for m in owner.messages]


def serving(spec=SPEC, prepare=lambda protocol: None):
    """
    Listen on 127.0.0.1 (a port the OS chooses) with an echoing channel per
    connection, made ready by C{prepare}; connect a peer socket and wait for
    its channel.  For C{yield from} in a test run by the reactor; returns
    C{(port, peer, protocol)}, which L{closing} ends.
    """
    protocols = []

    class Accepting(Factory):
        def buildProtocol(self, addr):
            protocol = ISOChannelProtocol(spec, Echo(), reactor())
            prepare(protocol)
            protocols.append(protocol)
            return protocol

    port = yield TCP4ServerEndpoint(reactor(), 0, interface="127.0.0.1").listen(Accepting())
    peer = socket.create_connection(("127.0.0.1", port.getHost().port))
    try:
        yield from until(lambda: protocols, what="the connection")
    except BaseException:
        yield from closing(port, peer, protocols)
        raise
    return port, peer, protocols[0]


def closing(port, peer, protocols):
    """
    End what L{serving} started: the peer, the port and the connections.
    """
    peer.close()
    yield port.stopListening()
    for protocol in protocols:
        protocol.transport.abortConnection()


def received(peer, length=None, timeout=10.0):
    """
    What C{peer} reads, letting the reactor run, until it has C{length}
    bytes, the stream ends, or C{timeout} seconds pass.
    """
    peer.setblocking(False)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while (length is None or len(data) < length) and time.monotonic() < deadline:
        yield deferLater(reactor(), 0.01)
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
    return bytes(data)


def test_a_lone_frame_is_sent_at_once():
    transport = SocketTransport()
    echoing(transport).dataReceived(SPEC.encode(sampleRequest(1)))
    assert len(transport.atOnce) == 1 and transport._tempDataLen == 0
    assert answers(transport.value()) == ["000001"]


def test_what_a_read_of_several_frames_causes_leaves_in_one_send_when_it_is_handled():
    transport = SocketTransport()
    echoing(transport).dataReceived(b"".join(SPEC.encode(sampleRequest(i)) for i in (1, 2, 3)))
    assert len(transport.atOnce) == 1  # one send, not three
    assert transport._tempDataLen == 0  # and no write: no epoll_ctl
    assert answers(transport.value()) == ["000001", "000002", "000003"]


def sending(transport):
    protocol = ISOChannelProtocol(SPEC, Echo(), Clock())
    protocol.makeConnection(transport)
    return protocol


class Split(Echo):
    """
    Sends odd requests on to the first of C{onward}, even ones to the
    second (as Forward does to a pool's members).
    """

    def __init__(self, onward):
        super().__init__()
        self.onward = onward

    def channelMessage(self, protocol, message):
        self.onward[int(message["11"]) % 2].sendMessage(message)


def test_frames_for_other_connections_leave_in_one_send_each_when_the_read_is_handled():
    issuers = [sending(SocketTransport()) for _ in range(2)]
    front = ISOChannelProtocol(SPEC, Split(issuers), Clock())
    front.makeConnection(SocketTransport())
    front.dataReceived(b"".join(SPEC.encode(sampleRequest(i)) for i in range(1, 7)))
    for issuer, sent in zip(
        issuers, (["000002", "000004", "000006"], ["000001", "000003", "000005"])
    ):
        assert len(issuer.transport.atOnce) == 1 and issuer.transport._tempDataLen == 0
        assert answers(issuer.transport.value()) == sent
    assert front.transport.value() == b""


def test_frames_gathered_for_a_connection_closed_in_the_same_read_go_through_write():
    # Two requests and a bad length prefix in one read: the two are answered,
    # the bad frame closes the connection (loseConnection), and the answers
    # go to the transport's buffer, which Twisted sends before it closes.
    spec = ChannelSpec.fromConfig("NACChannel", "ISO87A", properties={"max-packet-length": "4096"})
    transport = SocketTransport()
    protocol = ISOChannelProtocol(spec, Echo(), Clock())
    protocol.makeConnection(transport)
    protocol.dataReceived(
        spec.encode(sampleRequest(1)) + spec.encode(sampleRequest(2)) + b"\xff\xff" + b"x" * 10
    )
    assert transport.disconnecting and transport.atOnce == [] and transport._tempDataLen > 0
    assert answers(transport.value()) == ["000001", "000002"]


def test_a_connection_that_fails_when_its_frames_are_sent_costs_the_others_nothing():
    broken, sound = SocketTransport(), SocketTransport()

    def fails(data):
        raise OSError("the socket is gone")

    broken.writeSomeData = fails
    aborted = []
    broken.abortConnection = lambda: aborted.append(True)
    front = ISOChannelProtocol(SPEC, Split([sending(broken), sending(sound)]), Clock())
    front.makeConnection(StringTransport())
    with capturedText() as lines:
        front.dataReceived(b"".join(SPEC.encode(sampleRequest(i)) for i in (1, 2, 3)))
    assert answers(sound.value()) == ["000001", "000003"]
    assert aborted == [True]  # its peer sees it drop; what waits on it is told
    [line] = [text for text in lines if "frames not written" in text]
    assert "OSError" in line and "the socket is gone" not in line  # its type, never its text


def test_what_the_socket_does_not_take_is_buffered_and_nothing_overtakes_it():
    transport = SocketTransport(room=10)
    protocol = echoing(transport)
    protocol.dataReceived(SPEC.encode(sampleRequest(1)))
    assert transport.atOnce[0] == transport.value()[:10] and transport._tempDataLen > 0
    protocol.dataReceived(SPEC.encode(sampleRequest(2)))  # alone, but bytes wait before it
    assert len(transport.atOnce) == 1
    assert answers(transport.value()) == ["000001", "000002"]


def test_other_transports_always_get_write():
    protocol, transport, _ = connectedProtocol(SPEC)  # a plain StringTransport (TLS: the same)
    protocol.sendMessage(sampleRequest(1))
    assert answers(transport.value()) == ["000001"]


def test_a_wrapper_lending_a_socket_transports_attributes_gets_write():
    # Twisted's TLS transport forwards unknown attributes to the socket
    # transport below it: its bytes must still go through it, encrypted.
    class Wrapper:
        def __init__(self, inner):
            self.inner, self.written = inner, []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def write(self, data):
            self.written.append(data)

    socketTransport = SocketTransport()
    wrapper = Wrapper(socketTransport)
    protocol = echoing(wrapper)
    protocol.dataReceived(SPEC.encode(sampleRequest(1)))
    assert socketTransport.atOnce == [] and answers(b"".join(wrapper.written)) == ["000001"]


@pytest_twisted.inlineCallbacks
def test_frames_keep_their_order_over_a_socket_that_fills():
    # A peer that does not read while 3,000 answers are written one at a
    # time: the first go at once, the socket fills, the rest are buffered
    # by the transport; the peer then reads every one, in order.
    port, peer, protocol = yield from serving()
    try:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        protocol.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for i in range(3000):
            protocol.sendMessage({"t": "0210", "11": "%06d" % i, "39": "00"})
        assert protocol.transport.dataBuffer or protocol.transport._tempDataLen  # it filled
        expected = 3000 * len(SPEC.encode({"t": "0210", "11": "000000", "39": "00"}))
        data = yield from received(peer, expected)
        assert answers(data) == ["%06d" % i for i in range(3000)]
    finally:
        yield from closing(port, peer, [protocol])


def test_an_aborted_or_tls_connection_gets_write():
    for flag in ("_aborting", "TLS"):  # abortConnection(); startTLS()
        transport = SocketTransport()
        setattr(transport, flag, True)
        echoing(transport).dataReceived(SPEC.encode(sampleRequest(1)))
        assert transport.atOnce == [], flag


@pytest_twisted.inlineCallbacks
def test_a_read_of_many_requests_is_answered_over_a_real_socket_without_watching_it():
    # 200 requests in one write: their answers leave in sends of their own
    # as each read is handled, in order, and the socket is never watched
    # for writability (no epoll_ctl pair), as it has room for them all.
    watched = []
    port, peer, protocol = yield from serving()
    try:
        transport = protocol.transport
        startWriting = transport.startWriting

        def counted():
            watched.append(True)
            startWriting()

        transport.startWriting = counted
        peer.sendall(b"".join(SPEC.encode(sampleRequest(i)) for i in range(200)))
        expected = len(b"".join(SPEC.encode(Echo.answer(sampleRequest(i))) for i in range(200)))
        data = yield from received(peer, expected)
        assert answers(data) == ["%06d" % i for i in range(200)]
        assert watched == []
    finally:
        yield from closing(port, peer, [protocol])


@pytest.mark.parametrize("reactorName", ["default", "asyncio"])
def test_answers_to_a_read_of_many_reach_a_peer_whose_connection_is_half_closed_in_that_read(
    reactorName,
):
    # On asyncio the reactor writes and closes before a timer already due
    # runs: what a read causes must leave before that read ends.
    done = subprocess.run(
        [sys.executable, "-m", "tests.closing_peer", reactorName],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert answers(bytes.fromhex(done.stdout.strip())) == ["000001", "000002"]


@pytest_twisted.inlineCallbacks
def test_answers_to_frames_released_by_a_timer_reach_a_peer_closed_after_them():
    # Frames held, then released from a reactor timer (as a session's
    # in-flight hold is when an answer ends by a timeout): their answers
    # leave before the bad frame after them closes the connection.
    spec = ChannelSpec.fromConfig("NACChannel", "ISO87A", properties={"max-packet-length": "4096"})
    port, peer, protocol = yield from serving(spec, ISOChannelProtocol.holdFrames)
    try:
        peer.sendall(spec.encode(sampleRequest(1)) + spec.encode(sampleRequest(2)) + b"\xff\xff")
        yield from until(lambda: len(protocol._buffer) > 0, what="the held bytes")
        reactor().callLater(0, protocol.releaseFrames)
        data = yield from received(peer)  # until the connection is closed
        assert answers(data) == ["000001", "000002"]
    finally:
        yield from closing(port, peer, [protocol])

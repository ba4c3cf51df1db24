"""
A server that answers two requests read together and then closes its
writing side in the same read (as a draining session does after its last
answer), on the reactor named by argv[1] ("asyncio" or "default"); a
client on 127.0.0.1 reads until the end of the stream.  Prints what the
client received, in hex, on one line: the test checks both answers came.
Run from the repository's folder as C{python -m tests.closing_peer NAME}.
"""

import socket
import sys

if sys.argv[1] == "asyncio":
    from twisted.internet import asyncioreactor

    asyncioreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402

from muxpool.channel import ChannelSpec, ISOChannelProtocol  # noqa: E402
from muxpool.iso import responseMTI, sampleRequest  # noqa: E402
from tests.helpers import RecordingOwner  # noqa: E402

SPEC = ChannelSpec.fromConfig("NACChannel", "ISO87A")


class AnswerThenHalfClose(RecordingOwner):
    def channelMessage(self, protocol, message):
        protocol.sendMessage({"t": responseMTI(message["t"]), "11": message["11"], "39": "00"})
        if message["11"] == "000002":
            protocol.transport.loseWriteConnection()


class Serving(Factory):
    def buildProtocol(self, addr):
        return ISOChannelProtocol(SPEC, AnswerThenHalfClose(), reactor)


port = reactor.listenTCP(0, Serving(), interface="127.0.0.1")
peer = socket.create_connection(("127.0.0.1", port.getHost().port))
peer.sendall(SPEC.encode(sampleRequest(1)) + SPEC.encode(sampleRequest(2)))
peer.setblocking(False)
received = bytearray()


def read(turns=0):
    try:
        chunk = peer.recv(1 << 16)
        if not chunk:  # the end of the stream
            reactor.stop()
            return
        received.extend(chunk)
    except BlockingIOError:
        pass
    if turns > 500:  # 5 s: no end of stream
        reactor.stop()
        return
    reactor.callLater(0.01, read, turns + 1)


reactor.callLater(0.01, read)
reactor.run()
peer.close()
print(received.hex())

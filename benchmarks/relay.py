"""
The least a Twisted switch can do in the shape `switch.py` measures: a bare
relay, a floor under a switch on Twisted and this interpreter.

Acquirer connections (ASCIIChannel framing: 4 ASCII digits of length) ->
round-robin, a request at a time, over C{--members} issuer connections
(NACChannel framing: 2 bytes of length) -> back to the acquirer connection
each request came from.  It cuts frames and re-frames them: it decodes no
message, matches nothing and times nothing (an issuer simulator answers a
connection's requests in order, so each issuer connection keeps the
acquirer connections of its requests first in, first out).  It accepts
acquirers once every issuer connection is up.  Its writes are muxpool's:
what one read causes is gathered per connection and leaves in one C{send}
when that read is handled, straight to the socket when the connection
holds nothing unsent.

`switch.py` runs it to show what the reactor and the sockets cost in that
shape, and so what is left to a switch; it is not a switch (no outcomes,
no timeouts, no reconnection).

    python benchmarks/relay.py --port PORT --issuer 127.0.0.1:PORT --members 2
"""

import argparse
import sys
from collections import deque
from itertools import cycle
from typing import Any, Deque, Dict, Iterator, List, Optional

from twisted.internet.protocol import ClientFactory, Factory, Protocol


def send(transport: Any, data: bytes) -> None:
    """
    Give C{data} to the socket now when the connection is open and holds
    nothing unsent, the rest to C{transport.write} (which drops it once
    the connection is gone: an acquirer that left gets nothing).
    """
    if (
        transport.connected
        and not transport.disconnecting
        and not transport.dataBuffer
        and not transport._tempDataLen
    ):
        written = transport.writeSomeData(data)
        if isinstance(written, int) and written > 0:
            data = data[written:]
    if data:
        transport.write(data)


def flush(out: Dict[Protocol, List[bytes]]) -> None:
    """
    Send what one read caused: one C{send} per connection.
    """
    for peer, frames in out.items():
        send(peer.transport, frames[0] if len(frames) == 1 else b"".join(frames))


class Member(Protocol):
    """
    One issuer connection: answers go back, in order, to the acquirer
    connections their requests came from.
    """

    def __init__(self) -> None:
        self.waiting: Deque["Front"] = deque()
        self.buffer = b""

    def connectionMade(self) -> None:
        self.factory.relay.joined(self)

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        offset, size = 0, len(buffer)
        out: Dict[Protocol, List[bytes]] = {}
        while size - offset >= 2:
            end = offset + 2 + int.from_bytes(buffer[offset : offset + 2], "big")
            if end > size:
                break
            front = self.waiting.popleft()
            frames = out.get(front)
            if frames is None:
                out[front] = frames = []
            frames.append(b"%04d" % (end - offset - 2) + buffer[offset + 2 : end])
            offset = end
        self.buffer = buffer[offset:]
        flush(out)


class Front(Protocol):
    """
    One acquirer connection: each request to the next issuer connection.
    """

    def __init__(self, relay: "Relay") -> None:
        self.relay = relay
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        offset, size = 0, len(buffer)
        out: Dict[Protocol, List[bytes]] = {}
        members = self.relay.members
        while size - offset >= 4:
            length = int(buffer[offset : offset + 4])
            end = offset + 4 + length
            if end > size:
                break
            member = next(members)
            member.waiting.append(self)
            frames = out.get(member)
            if frames is None:
                out[member] = frames = []
            frames.append(length.to_bytes(2, "big") + buffer[offset + 4 : end])
            offset = end
        self.buffer = buffer[offset:]
        flush(out)


class Relay(Factory):
    """
    The acquirers' side: a L{Front} per connection, once all C{count}
    issuer connections are up.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.connected: List[Member] = []
        self.members: Optional[Iterator[Member]] = None

    def buildProtocol(self, addr: Any) -> Optional[Front]:
        return Front(self) if self.members is not None else None

    def joined(self, member: Member) -> None:
        self.connected.append(member)
        if len(self.connected) == self.count:
            self.members = cycle(self.connected)
            print("relay: ready", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="acquirers' port on 127.0.0.1")
    parser.add_argument(
        "--issuer", action="append", required=True, help="HOST:PORT, given once per issuer"
    )
    parser.add_argument("--members", type=int, default=2, help="issuer connections")
    args = parser.parse_args()
    from twisted.internet import reactor

    relay = Relay(args.members)
    memberFactory = ClientFactory()
    memberFactory.protocol = Member
    memberFactory.relay = relay
    for i in range(args.members):
        host, port = args.issuer[i % len(args.issuer)].rsplit(":", 1)
        reactor.connectTCP(host, int(port), memberFactory)
    reactor.listenTCP(args.port, relay, interface="127.0.0.1")
    print("relay: listening", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())

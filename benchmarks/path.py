"""
The switch's own Python path, in one process and without sockets: what a
request costs from the acquirer's bytes to the issuer's bytes and back,
with the kernel's share (send, recv, epoll) left out.

QServer (ASCIIChannel, ISO87A) -> Forward -> MUXPool (round-robin) -> QMUX
-> ChannelAdaptor (NACChannel, ISO87A), on in-memory transports.  Requests
arrive in batches of C{--in-flight} (one read of the acquirer's
connection); the issuers' answers to a batch are made outside the timed part
and fed back one read per member.  It prints CPU microseconds per
transaction and, with C{--profile}, where they go; C{--pending} prints the
memory a pending request holds (tracemalloc; the in-memory clock's time is
one float shared by all, so a real switch holds about 100 bytes more).  Run
it alone; it is the quick loop for the levers of benchmarks/switch.py's
targets.

    .venv/bin/python benchmarks/path.py [--members 2] [--in-flight 64]
    .venv/bin/python benchmarks/path.py --profile
    .venv/bin/python benchmarks/path.py --pending 20000
"""

import argparse
import cProfile
import gc
import pstats
import time

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport

from muxpool.channel import ChannelSpec
from muxpool.iso import defaultFields
from muxpool.link import AdaptorSettings, ChannelAdaptor, QServer, ServerSettings
from muxpool.listeners import Forward, Responder
from muxpool.mux import QMUX, MUXPool, RoundRobin

FRONT = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
BACK = ChannelSpec.fromConfig("NACChannel", "ISO87A")


def request(i):
    """
    What C{muxpool load} sends (the switch benchmark's requests).
    """
    return defaultFields("0200", i)


class Wire:
    """
    A ChannelAdaptor's endpoint: in-memory transports.
    """

    def __init__(self):
        self.protocols = []

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.protocols.append(protocol)
        return succeed(protocol)


class Switch:
    def __init__(self, members: int) -> None:
        self.clock = MemoryReactorClock()
        self.wires = []
        muxes = []
        for i in range(members):
            wire = Wire()
            adaptor = ChannelAdaptor(f"channel-{i}", BACK, wire, self.clock, AdaptorSettings())
            mux = QMUX(f"mux-{i}", adaptor, self.clock)
            adaptor.startService()
            mux.startService()
            self.wires.append(wire)
            muxes.append(mux)
        self.pool = MUXPool("core-mux", muxes, self.clock, RoundRobin())
        self.pool.startService()
        forward = Forward(self.pool, 300.0, clock=self.clock)
        self.server = QServer(
            "front",
            FRONT,
            "tcp:0",
            self.clock,
            ServerSettings(maxInFlight=1000000),
            listeners=[forward],
        )
        self.server.startService()
        factory = self.clock.tcpServers[0][1]  # what the server listened with
        self.front = factory.buildProtocol(None)
        self.front.makeConnection(StringTransport())
        self.responder = Responder(fixed={"44": "issuer"})

    def issuerBytes(self):
        """
        What each member's issuer would answer to what was written to it
        (made outside the timed part).
        """
        answers = []
        for wire in self.wires:
            for protocol in wire.protocols:
                data = protocol.transport.value()
                protocol.transport.clear()
                if data:
                    frames = []
                    for message in decodeAll(BACK, data):
                        frames.append(BACK.encode(self.responder.response(message)))
                    answers.append((protocol, b"".join(frames)))
        return answers


def decodeAll(spec, data):
    """
    The messages in C{data}, as the peer would read them.
    """
    messages, offset = [], 0
    while offset < len(data):
        found = spec.framing.nextFrame(data, offset, spec.maxPacketLength)
        if found is None:
            break
        frame, offset = found
        messages.append(spec.decode(frame[spec.headerLength(frame) :]))
    return messages


def run(members: int, inFlight: int, total: int, profile: bool) -> None:
    switch = Switch(members)
    batches = [
        b"".join(FRONT.encode(request(i)) for i in range(start, start + inFlight))
        for start in range(0, total, inFlight)
    ]
    profiler = cProfile.Profile() if profile else None
    spent = 0.0
    answered = 0
    gc.collect()
    for batch in batches:
        t = time.process_time()
        if profiler:
            profiler.enable()
        switch.front.dataReceived(batch)
        if profiler:
            profiler.disable()
        spent += time.process_time() - t
        answers = switch.issuerBytes()
        t = time.process_time()
        if profiler:
            profiler.enable()
        for protocol, data in answers:
            protocol.dataReceived(data)
        if profiler:
            profiler.disable()
        spent += time.process_time() - t
        out = switch.front.transport.value()
        switch.front.transport.clear()
        answered += len(decodeAll(FRONT, out))
    print(
        f"members {members}, in flight {inFlight}: {answered}/{len(batches) * inFlight} answered, "
        f"{spent / answered * 1e6:.1f} us per transaction"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def pending(count: int) -> None:
    import tracemalloc  # not on PyPy: imported only for this figure

    switch = Switch(2)
    batch = b"".join(FRONT.encode(request(i)) for i in range(count))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    switch.front.dataReceived(batch)
    for wire in switch.wires:
        for protocol in wire.protocols:
            protocol.transport.clear()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    print(f"{count} pending: {(after - before) / count:.0f} bytes each (tracemalloc)")
    for stat in snapshot.statistics("lineno")[:40]:
        print(f"  {stat.size / count:7.0f} B  {stat.traceback}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--requests", type=int, default=64 * 500)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pending", type=int, default=0)
    args = parser.parse_args()
    if args.pending:
        pending(args.pending)
    else:
        run(args.members, args.in_flight, args.requests, args.profile)

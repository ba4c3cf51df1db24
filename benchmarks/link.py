"""
Requests per second and p50/p99 latency for ChannelAdaptor + QMUX against a
QServer + Responder on 127.0.0.1, at 1, 16 and 64 in flight, in one run.

    python benchmarks/link.py [--requests 5000] [--channel NACChannel]
"""

import argparse
import time

from twisted.internet import defer, task

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.mux import percentile
from muxpool.testing import portOf, startIssuer, startLink


@defer.inlineCallbacks
def measure(reactor, mux, total, inFlight):
    latencies = []
    sent = time.perf_counter()
    outcomes = yield runLoad(mux, total, inFlight, latencies=latencies)
    elapsed = time.perf_counter() - sent
    ok = sum(1 for o in outcomes if isinstance(o, dict))
    return ok, total / elapsed, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


@defer.inlineCallbacks
def main(reactor, args):
    channelSpec = ChannelSpec.fromConfig(args.channel, args.packager)
    server = yield startIssuer(reactor, spec=channelSpec)
    link = startLink(reactor, portOf(server), spec=channelSpec)
    yield link.whenReady()
    print(f"{args.channel} + {args.packager}, {args.requests} requests per row, 127.0.0.1")
    print(f"{'in flight':>9} {'answered':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    try:
        for inFlight in (1, 16, 64):
            ok, rps, p50, p99 = yield measure(reactor, link.mux, args.requests, inFlight)
            print(f"{inFlight:>9} {ok:>9} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f}")
    finally:
        yield link.stop()
        yield server.stopService()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--channel", default="NACChannel")
    parser.add_argument("--packager", default="ISO87A")
    task.react(main, [parser.parse_args()])

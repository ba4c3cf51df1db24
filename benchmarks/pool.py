"""
Requests per second through a MUXPool of 1, 2, 8, 32 and 200 members beside
a bare QMUX, the cost of one selection with 2 and 200 members, and the time
from a member's loss to the first request served by another; in one run.

All traffic goes to QServer + Responder backends on 127.0.0.1.

    python benchmarks/pool.py [--requests 5000] [--in-flight 64]
"""

import argparse
import time
import timeit

from twisted.internet import defer, task

from muxpool.app import runLoad
from muxpool.mux import QMUX, MUXPool, strategyByName
from muxpool.testing import MemoryLink, PoolHarness, answer, portOf, startIssuer, startLink


@defer.inlineCallbacks
def rate(mux, total, inFlight):
    t0 = time.perf_counter()
    outcomes = yield runLoad(mux, total, inFlight)
    elapsed = time.perf_counter() - t0
    ok = sum(1 for o in outcomes if isinstance(o, dict))
    failures = {}
    for o in outcomes:
        if not isinstance(o, dict):
            failures[type(o.value).__name__] = failures.get(type(o.value).__name__, 0) + 1
    if failures:
        print(
            "   failures:",
            failures,
            [str(o.value) for o in outcomes if not isinstance(o, dict)][:2],
        )
    return ok, total / elapsed


@defer.inlineCallbacks
def members(reactor, port, n, prefix):
    made = [startLink(reactor, port, name=f"{prefix}{i}") for i in range(n)]
    for adaptor, _ in made:
        yield adaptor.ready.whenState(True)
    return made


def selectionCost(n, strategy="round-robin"):
    pool = PoolHarness(n, strategy).pool
    msg = {"t": "0200"}
    number = 100000
    return min(timeit.repeat(lambda: pool.select(msg), number=number, repeat=3)) / number * 1e6


def drainCost(n, waiters):
    """
    Seconds to answer C{n} pending requests while C{waiters} wait for the
    QMUX to drain (issue 8 #8: this was quadratic).
    """
    clock = task.Clock()
    link = MemoryLink("l")
    mux = QMUX("m", link, clock)
    mux.startService()
    for i in range(n):
        mux.request({"t": "0200", "11": "%06d" % i, "41": "T1"}, 30)
    for _ in range(waiters):
        mux.whenDrained(link)
    answers = [answer(m) for m in link.sent]
    t0 = time.perf_counter()
    for response in answers:
        link.deliver(response)
    return time.perf_counter() - t0


@defer.inlineCallbacks
def failover(reactor, inFlight):
    servers = []
    for _ in range(2):
        servers.append((yield startIssuer(reactor, gracePeriod=0)))
    made = [startLink(reactor, portOf(s), name=f"fo{i}") for i, s in enumerate(servers)]
    for adaptor, _ in made:
        yield adaptor.ready.whenState(True)
    pool = MUXPool("fo", [m for _, m in made], reactor, strategyByName("primary-secondary"))
    pool.startService()
    marks = {}

    def onEach(i, result):
        if i == 2000 and "lost" not in marks:
            marks["lost"] = time.perf_counter()
            for session in list(servers[0].sessions.values()):
                session.protocol.transport.abortConnection()
            servers[0].port.stopListening()
        if "lost" in marks and "first" not in marks and isinstance(result, dict):
            if made[1][1].counters["rx"] > 0:
                marks["first"] = time.perf_counter()

    outcomes = yield runLoad(pool, 4000, inFlight, onEach=onEach)
    lost = sum(1 for o in outcomes if not isinstance(o, dict))
    for adaptor, _ in made:
        yield adaptor.stopService()
    for s in servers:
        yield s.stopService()
    return (marks["first"] - marks["lost"]) * 1000, lost


@defer.inlineCallbacks
def main(reactor, args):
    server = yield startIssuer(reactor)
    port = portOf(server)
    print(f"{args.requests} requests per row, {args.in_flight} in flight, 127.0.0.1")
    print(f"{'target':>18} {'answered':>9} {'req/s':>9}")
    made = yield members(reactor, port, 200, "m")
    try:
        ok, rps = yield rate(made[0][1], args.requests, args.in_flight)
        print(f"{'bare QMUX':>18} {ok:>9} {rps:>9.0f}")
        for n in (1, 2, 8, 32, 200):
            pool = MUXPool(
                f"pool{n}", [m for _, m in made[:n]], reactor, strategyByName("round-robin")
            )
            pool.startService()
            ok, rps = yield rate(pool, args.requests, args.in_flight)
            yield pool.stopService()
            print(f"{'pool of ' + str(n):>18} {ok:>9} {rps:>9.0f}")
        pool = MUXPool("ll", [m for _, m in made[:2]], reactor, strategyByName("least-latency"))
        pool.startService()
        ok, rps = yield rate(pool, args.requests, args.in_flight)
        yield pool.stopService()
        print(f"{'least-latency, 2':>18} {ok:>9} {rps:>9.0f}")
    finally:
        for adaptor, _ in made:
            yield adaptor.stopService()
        yield server.stopService()
    for strategy in ("round-robin", "least-latency"):
        for n in (2, 200):
            print(f"{strategy} selection, {n:>3} members: {selectionCost(n, strategy):.2f} us")
    print(
        f"8000 answers while draining: {drainCost(8000, 0):.3f} s with no drain waiter, "
        f"{drainCost(8000, 1):.3f} s with one"
    )
    ms, lost = yield failover(reactor, 16)
    print(
        f"failover: member lost -> first request served by the other: {ms:.1f} ms "
        f"({lost} in-flight requests ended not answered)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=64)
    task.react(main, [parser.parse_args()])

"""
What every reliability scenario shares: a steady load from acquirer
connections that keeps each request's outcome and time, and the accounting
each scenario ends with.

The accounting, for every scenario:
  - each request sent has exactly one outcome;
  - nothing waits past its timeout (plus a little for the reactor), and
    each 68 comes by the switch's own timeout;
  - every approval an issuer wrote reached its client, or is named in
    exactly one "answer not delivered" warning line, or the switch told the
    client the outcome is unknown (68: it reverses);
  - the issuers' counts agree with the answers: every 00 a client got was
    written by the issuer its field 44 names, and by no other.
"""

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from muxpool.errors import NotSent, OutcomeUnknown
from muxpool.iso import sampleRequest
from muxpool.mux import MUXPool, percentile, strategyByName
from muxpool.testing import startLink
from tests.e2e import ASCII, UNDELIVERED, key, reactor, stopIssuers, until

FULL = os.environ.get("MUXPOOL_RELIABILITY") == "full"
UNKNOWN_CODE = "68"


def scaled(ci, full):
    """
    C{ci} in the default run, C{full} with C{MUXPOOL_RELIABILITY=full}.
    """
    return full if FULL else ci


class Load:
    """
    Requests through C{connections} acquirer connections to C{port}, at
    most C{inFlight} outstanding, until L{stop}: each request's outcome and
    how long it took are kept by its index.
    """

    def __init__(
        self, port, connections=4, inFlight=16, timeout=3.0, start=0, host="127.0.0.1", rate=None
    ):
        """
        @param rate: requests per second at most (None: as fast as the
            answers come).
        """
        self.port, self.host = port, host
        self.interval = inFlight / rate if rate else 0.0
        self.connections, self.inFlight, self.timeout = connections, inFlight, timeout
        self.next = start
        self.first = start
        self.outcomes = {}  # index -> (outcome, seconds, finished at)
        self.sentAt = {}
        self._stopping = False
        self._workers = None
        self._links = []
        self._pool = None
        self._stopped = None

    @defer.inlineCallbacks
    def start(self):
        self._links = [
            startLink(
                reactor(),
                self.port,
                name=f"acquirer-{i}",
                spec=ASCII,
                host=self.host,
                reconnectDelay=0.2,
                maxReconnectDelay=0.5,
            )
            for i in range(self.connections)
        ]
        self._pool = MUXPool(
            "acquirer", [link.mux for link in self._links], reactor(), strategyByName("round-robin")
        )
        self._pool.startService()
        for link in self._links:
            yield link.whenReady()
        self._workers = defer.gatherResults([self._worker() for _ in range(self.inFlight)])
        return self

    @defer.inlineCallbacks
    def _worker(self):
        now = time.monotonic
        while not self._stopping:
            i, self.next = self.next, self.next + 1
            started = now()
            self.sentAt[i] = started
            try:
                outcome = yield self._pool.request(sampleRequest(i), self.timeout)
            except Exception:
                outcome = Failure()
                if outcome.check(NotSent):  # no connection up: do not spin
                    yield deferLater(reactor(), 0.05)
            assert i not in self.outcomes, f"request {i} had a second outcome"
            self.outcomes[i] = (outcome, now() - started, now())
            if self.interval:  # each worker sends one request per interval
                yield deferLater(reactor(), max(0.0, started + self.interval - now()))

    @property
    def done(self):
        return len(self.outcomes)

    def whenDone(self, n, timeout=60.0):
        """
        Fires once C{n} more requests than now have their outcome.
        """
        target = self.done + n
        return until(lambda: self.done >= target, timeout, f"{n} more outcomes")

    def stop(self):
        """
        Send no more; fires once every request sent has its outcome (and
        the connections are closed).  Calling it again does nothing more.
        """
        if self._stopped is None:
            self._stopping = True
            self._stopped = self._stop()
        stopped = defer.Deferred()

        def done(result):
            if isinstance(result, Failure):
                stopped.errback(result)
            else:
                stopped.callback(self)
            return None  # each caller gets the failure, if any

        self._stopped.addBoth(done)
        return stopped

    @defer.inlineCallbacks
    def _stop(self):
        try:  # every request has its outcome within its timeout, or this names them
            yield self._workers.addTimeout(self.timeout + 10, reactor())
        except defer.TimeoutError:
            missing = sorted(set(self.sentAt) - set(self.outcomes))
            raise AssertionError(f"requests with no outcome: {missing[:10]}") from None
        yield self._pool.stopService()
        for link in self._links:
            yield link.stop()
        return self

    def sent(self):
        return [self.outcomes[i][0] for i in sorted(self.outcomes)]

    def between(self, since, before=float("inf")):
        """
        The indices of the requests sent in that span of time.
        """
        return [i for i, at in self.sentAt.items() if since <= at < before]


@defer.inlineCallbacks
def finish(load, switches, made, proxies=()):
    """
    End a scenario, whatever it asserted: the load, the switches (fires
    with their exit codes), the fault proxies, then the issuers
    (C{issuers()}'s list; each must exit 0).
    """
    yield load.stop()
    codes = [proc.stop() for proc in switches]
    for proxy in proxies:
        yield proxy.stopService()
    stopIssuers(made)
    return codes


def readRecords(records):
    """
    Each issuer's records: {issuer index: [key, ...]} of the approvals it
    wrote (11, 41), in order.
    """
    found = {}
    for n, record in enumerate(records, 1):
        keys = []
        if os.path.exists(record):
            with open(record) as f:
                for line in f:
                    if line.endswith("\n"):
                        entry = json.loads(line)
                        if entry["39"] == "00":
                            keys.append(key(entry))
        found[n] = keys
    return found


def kindOf(outcome):
    """
    A request's outcome in a word: its 39, or which failure.
    """
    if isinstance(outcome, dict):
        return outcome["39"]
    if outcome.check(OutcomeUnknown):
        return "unknown:" + type(outcome.value).__name__
    if outcome.check(NotSent):
        return "not sent:" + type(outcome.value).__name__
    return "error:" + type(outcome.value).__name__


@dataclass
class Account:
    """
    The accounting of one run (see the module docstring).
    """

    sent: int
    outcomes: Counter
    approved: int
    delivered: int
    warned: int
    toldUnknown: int
    p50: float
    p99: float
    slowest: float
    perIssuer: dict = field(default_factory=dict)

    def figures(self):
        return {
            "requests": self.sent,
            "outcomes": dict(self.outcomes.most_common()),
            "issuer approvals": self.approved,
            "delivered 00": self.delivered,
            "in a reverse-it warning": self.warned,
            "told unknown (68)": self.toldUnknown,
            "p50 ms": round(self.p50 * 1000, 1),
            "p99 ms": round(self.p99 * 1000, 1),
            "slowest ms": round(self.slowest * 1000, 1),
        }


def account(load, records, log, issuerNames=None, switchTimeout=10.0):
    """
    Check the accounting of C{load} against the issuers' C{records} and
    the switch's C{log} (every switch process's, joined); return it.

    @param switchTimeout: the front's Forward timeout, in seconds: the
        switch answers 68 by then (plus a little for the reactor).
    """
    outcomes = load.outcomes
    assert set(outcomes) == set(load.sentAt), "a request sent without an outcome"
    seconds = sorted(s for _, s, _ in outcomes.values())
    slowest = seconds[-1] if seconds else 0.0
    assert slowest <= load.timeout + 1.5, f"a request waited {slowest:.1f} s"
    late68 = [
        round(s, 2)
        for o, s, _ in outcomes.values()
        if isinstance(o, dict) and o["39"] == UNKNOWN_CODE and s > switchTimeout + 1.0
    ]
    assert late68 == [], f"68s later than the switch's {switchTimeout} s timeout: {late68[:5]}"
    sentKeys = {key(sampleRequest(i)): i for i in outcomes}
    byIssuer = readRecords(records)
    approved = {}
    for n, keys in byIssuer.items():
        counts = Counter(keys)
        twice = [k for k, c in counts.items() if c > 1 and k in sentKeys]
        assert twice == [], f"issuer {n} answered {len(twice)} requests twice: {twice[:3]}"
        for k in keys:
            if k in sentKeys:
                assert k not in approved, f"{k} approved by two issuers"
                approved[k] = n
    answered = {}
    for i, (outcome, _, _) in outcomes.items():
        answered[key(sampleRequest(i))] = outcome
    warned = Counter(UNDELIVERED.findall(log))
    assert all(c == 1 for c in warned.values()), f"warned more than once: {warned}"
    delivered = told = 0
    for k, n in approved.items():
        outcome = answered[k]
        if isinstance(outcome, dict) and outcome["39"] == "00":
            delivered += 1
            if issuerNames:
                assert outcome.get("44") == issuerNames[n - 1], (k, outcome.get("44"), n)
        elif k in warned:
            continue
        elif isinstance(outcome, dict) and outcome["39"] == UNKNOWN_CODE:
            told += 1  # the switch said so: the acquirer reverses
        else:
            raise AssertionError(f"approved {k} by issuer {n}, client got {kindOf(outcome)}")
    faked = [
        k
        for k, o in answered.items()
        if isinstance(o, dict) and o["39"] == "00" and k not in approved
    ]
    assert faked == [], f"a client got 00 no issuer wrote: {faked[:3]}"
    return Account(
        sent=len(outcomes),
        outcomes=Counter(kindOf(o) for o, _, _ in outcomes.values()),
        approved=len(approved),
        delivered=delivered,
        warned=len(warned),
        toldUnknown=told,
        p50=percentile(seconds, 50) if seconds else 0.0,
        p99=percentile(seconds, 99) if seconds else 0.0,
        slowest=slowest,
        perIssuer={n: len(keys) for n, keys in byIssuer.items()},
    )


def rss(pid):
    """
    Resident memory of C{pid}, in MiB.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def split(load, indices):
    """
    Which issuer (field 44) answered C{indices}, as counts.
    """
    return Counter(
        load.outcomes[i][0].get("44", "?")
        for i in indices
        if i in load.outcomes and isinstance(load.outcomes[i][0], dict)
    )

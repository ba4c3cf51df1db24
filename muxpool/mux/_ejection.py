"""
Outlier ejection for a pool (beyond jPOS, off by default), after Envoy's:
a member whose requests time out, or whose issuer answers "inoperative",
too many times in a row is taken out of rotation until it proves it
answers again, never more than a share of the members at once, and with a
panic mode when too few are left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Mapping, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from muxpool._support import RateLimiter, cancelTimer
from muxpool.interfaces import IMUX, IProbe

if TYPE_CHECKING:
    from muxpool.mux._pool import MUXPool


@dataclass(frozen=True)
class Ejection:
    """
    When a pool ejects a member.  All off (0) by default.

    @ivar consecutiveTimeouts: eject after this many timeouts in a row
        (C{suspend-after-timeouts} is its older spelling).
    @ivar consecutiveCodes: eject after this many answers in a row whose
        field 39 is one of C{outlierCodes} (e.g. 91 96: issuer inoperative,
        system malfunction).
    @ivar ejectionTime: seconds out, doubling with each ejection in a row
        up to C{maxEjectionTime}, for a member ejected for its codes (its
        link answers: an echo would prove nothing) or whose link cannot
        prove its peer answers; a member ejected for timeouts whose link
        can (an echo or a sign-on) comes back as soon as it does.
    @ivar maxEjectionPercent: never more than this share of the members
        out at once (one at least).
    @ivar panicPercent: when fewer than this share of the members are
        usable, the pool panics and uses every connected member (0: never).
    """

    consecutiveTimeouts: int = 0
    consecutiveCodes: int = 0
    outlierCodes: FrozenSet[str] = field(default_factory=frozenset)
    ejectionTime: float = 30.0
    maxEjectionTime: float = 300.0
    maxEjectionPercent: float = 50.0
    panicPercent: float = 50.0

    @property
    def enabled(self) -> bool:
        return bool(self.consecutiveTimeouts or (self.consecutiveCodes and self.outlierCodes))


class Ejector:
    """
    The ejection state of one pool's members (see L{Ejection}).

    """

    log = Logger()

    def __init__(self, pool: "MUXPool", rules: Ejection) -> None:
        self.pool = pool
        self.rules = rules
        self.counters = pool.counters  # C{ejections}, C{returns}, C{panics} there
        self.panicking = False
        # member name -> the wait for its return (a probe, or a timer)
        self._out: Dict[str, Union[Deferred, IDelayedCall, None]] = {}
        self._timeouts: Dict[str, int] = {}
        self._codes: Dict[str, int] = {}
        self._inRow: Dict[str, int] = {}  # ejections in a row, for the doubling
        self._fallback: Dict[str, IDelayedCall] = {}  # a probe's time limit
        self._limiter = RateLimiter(clock=pool.clock)

    def isEjected(self, member: IMUX) -> bool:
        return member.name in self._out

    # -- what members do ------------------------------------------------------

    def answered(self, member: IMUX, response: Mapping[str, str]) -> None:
        if self.isEjected(member):
            return  # what was in flight when it went: it starts afresh on return
        rules = self.rules
        name = member.name
        self._timeouts.pop(name, None)
        if rules.consecutiveCodes and response.get("39") in rules.outlierCodes:
            count = self._codes[name] = self._codes.get(name, 0) + 1
            if count >= rules.consecutiveCodes:
                # Its link answers (an echo would prove nothing): back on time.
                why = f"{count} answers in a row were 39={response.get('39')}"
                self._eject(member, why, probe=False)
            return
        self._codes.pop(name, None)
        self._inRow.pop(name, None)  # a good answer: the next ejection starts short

    def timedOut(self, member: IMUX) -> None:
        if not self.rules.consecutiveTimeouts or self.isEjected(member):
            return
        count = self._timeouts[member.name] = self._timeouts.get(member.name, 0) + 1
        if count >= self.rules.consecutiveTimeouts:
            self._eject(member, f"{count} requests in a row timed out")

    # -- out and back -----------------------------------------------------------

    def _eject(self, member: IMUX, why: str, probe: bool = True) -> None:
        pool = self.pool
        name = member.name
        if self.isEjected(member) or member not in pool.members or not pool.running:
            return
        # at least one may be out, as Envoy allows
        cap = max(1.0, self.rules.maxEjectionPercent / 100.0 * len(pool.members))
        if len(self._out) + 1 > cap:
            self._limiter.emit(
                self.log.warn,
                ("cap", name),
                "{pool}: {member}: {why}, but {count} of {total} members are out already "
                "(max-ejection-percent {percent:g}); it stays in rotation",
                pool=pool.name,
                member=name,
                why=why,
                count=len(self._out),
                total=len(pool.members),
                percent=self.rules.maxEjectionPercent,
                event="pool.ejection_capped",
            )
            return
        self._timeouts.pop(name, None)
        self._codes.pop(name, None)
        inRow = self._inRow[name] = self._inRow.get(name, 0) + 1
        self.counters["ejections"] += 1
        link = getattr(member, "link", None)
        if probe and IProbe.providedBy(link):
            until = (
                f"{getattr(link, 'name', link)} proves its peer answers (an echo or a "
                f"sign-on), {self.rules.maxEjectionTime:g}s at most"
            )
            self._probe(member, link)
            self._fallback[name] = pool.clock.callLater(self.rules.maxEjectionTime, self.back, name)
        else:
            exponent = min(inRow - 1, 30)
            seconds = min(self.rules.ejectionTime * 2**exponent, self.rules.maxEjectionTime)
            until = f"{seconds:g}s have passed"
            self._out[name] = pool.clock.callLater(seconds, self.back, name)
        self.log.warn(
            "{pool}: {member} ejected: {why}; out of rotation until {until}",
            pool=pool.name,
            member=name,
            why=why,
            until=until,
            event="pool.member_ejected",
        )
        pool._changed()

    def _probe(self, member: IMUX, link: Any) -> None:
        """
        Wait for C{link} to prove its peer answers; if that wait ends
        otherwise (the link stopped: its channel was redeployed), wait on
        the member's link as it is now.
        """
        probe = link.probe()
        self._out[member.name] = probe
        probe.addCallbacks(
            lambda _: self.back(member.name),
            lambda failure: self._probeEnded(member, probe),
        )

    def _probeEnded(self, member: IMUX, probe: Deferred) -> None:
        if self._out.get(member.name) is not probe or not self.pool.running:
            return  # back, forgotten or stopped: nothing to wait for
        link = getattr(member, "link", None)
        if IProbe.providedBy(link):
            self._probe(member, link)
        else:
            self.back(member.name)  # nothing left to prove it by

    def back(self, name: str, log: bool = True) -> None:
        """
        C{name} returns to rotation (it proved it answers, or its time is up).
        """
        if name not in self._out:
            return
        wait = self._out.pop(name)
        if isinstance(wait, Deferred):
            if not wait.called:
                wait.cancel()
        else:
            cancelTimer(wait)
        cancelTimer(self._fallback.pop(name, None))
        self._timeouts.pop(name, None)
        self._codes.pop(name, None)
        if log:
            self.counters["returns"] += 1
            self.log.info(
                "{pool}: {member} back in rotation",
                pool=self.pool.name,
                member=name,
                event="pool.member_returned",
            )
            self.pool._changed()

    def forget(self, name: str) -> None:
        self.back(name, log=False)
        for counts in (self._timeouts, self._codes, self._inRow):
            counts.pop(name, None)

    def stop(self) -> None:
        for name in list(self._out):
            self.back(name, log=False)

    # -- panic --------------------------------------------------------------

    def checkPanic(self, usable: int, total: int) -> None:
        """
        With C{usable} of C{total} members usable (ejected ones not
        counted): below C{panicPercent} of them, panic (every
        connected member is used, ejected or not), said once.
        """
        threshold = self.rules.panicPercent
        panic = bool(self._out) and total > 0 and usable < threshold / 100 * total
        if panic == self.panicking:
            return
        self.panicking = panic
        if panic:
            self.counters["panics"] += 1
            self.log.warn(
                "{pool}: panic: only {usable} of {total} members usable; using every "
                "connected member, ejected or not",
                pool=self.pool.name,
                usable=usable,
                total=total,
                event="pool.panic",
            )
        else:
            self.log.info("{pool}: panic over", pool=self.pool.name, event="pool.panic_over")


def ejectionFrom(suspendAfterTimeouts: int = 0, ejection: Optional[Ejection] = None) -> Ejection:
    """
    The rules a pool runs with: C{ejection}, or its older spelling.
    """
    if ejection is not None:
        return ejection
    # as before it was a spelling of ejection: any member, and no panic
    return Ejection(
        consecutiveTimeouts=suspendAfterTimeouts, maxEjectionPercent=100.0, panicPercent=0.0
    )

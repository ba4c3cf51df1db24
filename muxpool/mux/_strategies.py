"""
MUXPool strategies, by their jPOS names, and how a strategy is found.

Each built-in picks in constant time when the member it looks at first is
usable (the common case), so a pool of 200 picks as fast as a pool of 2;
only C{least-pending} looks at every member by its nature
(C{least-latency} draws two).
"""

from __future__ import annotations

import math
import random
from math import gcd
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from twisted.plugin import getPlugins
from zope.interface import implementer

from muxpool._config import importNamed, milliseconds, parseFieldList
from muxpool._support import describeCode, describeError
from muxpool.interfaces import IMUX, IPool, IStrategy


class StrategyConfigError(ValueError):
    """
    A strategy name or class that cannot be used; lists the known names.
    """


def _firstUsable(pool: IPool, start: int) -> Optional[int]:
    """
    The position of the first usable member from C{start} on, wrapping.
    """
    members = pool.members
    count = len(members)
    for i in range(count):
        position = (start + i) % count
        if pool.isUsable(members[position]):
            return position
    return None


@implementer(IStrategy)
class PrimarySecondary:
    """
    The first usable member in list order (jPOS's default).
    """

    name = "primary-secondary"

    def __init__(self, config: Optional[Mapping] = None) -> None:
        pass

    def select(self, pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        position = _firstUsable(pool, 0)
        return None if position is None else pool.members[position]


@implementer(IStrategy)
class RoundRobin:
    """
    Rotating start.  The next start is the member after the one chosen, so
    an unusable member's turn is not given twice to the member after it
    (jPOS issue 36).
    """

    name = "round-robin"

    def __init__(self, config: Optional[Mapping] = None) -> None:
        self._next = 0

    def select(self, pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        members = pool.members
        if not members:
            return None
        position = _firstUsable(pool, self._next % len(members))
        if position is None:
            return None
        self._next = position + 1
        return members[position]


@implementer(IStrategy)
class RoundRobinWithOverride(RoundRobin):
    """
    MTIs listed in C{follower-override} go to the member whose link is named
    by the message's C{original-channel-field}; everything else, and those
    whose member is not usable, round-robin.
    """

    name = "round-robin-with-override"

    def __init__(self, config: Optional[Mapping] = None) -> None:
        RoundRobin.__init__(self, config)
        config = config or {}
        self.overrideMTIs = frozenset(parseFieldList(config.get("follower-override", "")))
        self.field = (config.get("original-channel-field") or "").strip()

    def select(self, pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        if self.field and message.get("t") in self.overrideMTIs:
            name = (message.get(self.field) or "").strip()
            member = pool.memberNamed(name) if name else None
            if member is not None and pool.isUsable(member):
                return member
        return RoundRobin.select(self, pool, message)


@implementer(IStrategy)
class SplitByDivisor(RoundRobin):
    """
    The C{split-field} value modulo the member count picks the member (any
    length of digits, a whole PAN included); round-robin when the value is
    missing or not numeric, or that member is not usable.
    """

    name = "split-by-divisor"

    def __init__(self, config: Optional[Mapping] = None) -> None:
        RoundRobin.__init__(self, config)
        self.field = ((config or {}).get("split-field") or "").strip()

    def select(self, pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        value = (message.get(self.field) or "").strip() if self.field else ""
        members = pool.members
        if value.isdigit() and members:
            member = members[int(value) % len(members)]
            if pool.isUsable(member):
                return member
        return RoundRobin.select(self, pool, message)


@implementer(IStrategy)
class LeastPending:
    """
    The usable member with the fewest requests in flight (ties by list
    order), so a slow node takes less traffic.  Looks at every member.
    """

    name = "least-pending"

    def __init__(self, config: Optional[Mapping] = None) -> None:
        pass

    def select(self, pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        best, bestCount = None, None
        for member in pool.members:
            if pool.isUsable(member):
                count = member.pendingCount()
                if bestCount is None or count < bestCount:
                    best, bestCount = member, count
                    if count == 0:
                        break
        return best


#: Seconds over which least-latency forgets a member's response times.
DECAY_TIME = 10.0

#: The cost of a member with no answer yet but a request on its way.
UNKNOWN_PENALTY = 1e9


@implementer(IStrategy)
class LeastLatency:
    """
    Finagle's P2C peak EWMA: two usable members drawn at random, the one
    whose cost is lower is chosen; a member's cost is its peak-sensitive
    EWMA of response time times its pending requests plus one.  A slow
    response raises the cost at once (the peak); fast ones lower it over
    C{decay-time}.  A member with no answer yet costs nothing, so it is
    tried, one request at a time until it answers.  Picks in constant time.

    The pool tells it each response time (L{observe}).  Config:
    C{decay-time} (ms, default 10000) and C{seed} (tests: a repeatable
    draw).
    """

    name = "least-latency"

    def __init__(self, config: Optional[Mapping] = None) -> None:
        config = dict(config or {})
        try:
            self.decayTime = milliseconds(config.get("decay-time") or None, DECAY_TIME)
        except ValueError as e:
            raise StrategyConfigError(f"decay-time: {e}") from None
        if not self.decayTime > 0:
            raise StrategyConfigError("decay-time must be above 0")
        seed = config.get("seed")
        self.random = random.Random(None if seed is None else int(seed))
        # member -> (cost in seconds, when last observed)
        self._costs: Dict[str, Tuple[float, float]] = {}
        self._now = 0.0  # the latest clock time told: costs fade to it

    def observe(self, member: IMUX, seconds: float, now: float) -> None:
        """
        C{member} answered (or timed out) in C{seconds}, at clock time C{now}.
        """
        self._now = max(self._now, now)
        cost, stamp = self._costs.get(member.name, (0.0, now))
        if seconds > cost:
            cost = seconds  # the peak, at once
        else:
            weight = math.exp(-max(0.0, now - stamp) / self.decayTime)
            cost = cost * weight + seconds * (1.0 - weight)
        self._costs[member.name] = (cost, now)

    def cost(self, member: IMUX) -> float:
        pending = member.pendingCount()
        if member.name not in self._costs and pending:
            # No answer yet, one on its way: as Finagle does, no more until
            # it tells how fast the member is (one probe at a time).
            return UNKNOWN_PENALTY + pending
        cost, stamp = self._costs.get(member.name, (0.0, self._now))
        # fading while others answer, so a member once slow (a timeout) is
        # tried again in time, not starved for ever
        faded = cost * math.exp(-max(0.0, self._now - stamp) / self.decayTime)
        return faded * (pending + 1)

    def select(self, pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        members = pool.members
        count = len(members)
        if not count:
            return None
        draw = self.random.randrange
        first, second = members[draw(count)], members[draw(count)]
        firstOk, secondOk = pool.isUsable(first), pool.isUsable(second)
        if not (firstOk and secondOk) or first is second:
            usable = [m for m in members if pool.isUsable(m)]
            if len(usable) < 2:
                return usable[0] if usable else None
            first, second = self.random.sample(usable, 2)
        return first if self.cost(first) <= self.cost(second) else second


def parseWeights(text: Union[str, Mapping[str, Union[int, str]], None]) -> Dict[str, int]:
    """
    C{"a:3 b:1"} (or a mapping) -> C{{"a": 3, "b": 1}}.
    """
    if isinstance(text, Mapping):
        return {k: int(v) for k, v in text.items()}
    weights = {}
    for part in parseFieldList(text or ""):
        name, _, weight = part.partition(":")
        try:
            weights[name] = int(weight or 1)
        except ValueError:
            raise StrategyConfigError(f"weight for {name!r} is not a number: {weight!r}") from None
        if weights[name] < 0:
            raise StrategyConfigError(f"weight for {name!r} is negative")
    return weights


@implementer(IStrategy)
class WeightedRoundRobin:
    """
    Smooth weighted rotation (members interleaved, not bunched), with
    weights from C{weights} (C{"name:weight ..."}; unlisted members weigh 1).
    The rotation is computed once per member list, so a pick costs one step
    when that member is usable.
    """

    name = "weighted-round-robin"

    def __init__(self, config: Optional[Mapping] = None) -> None:
        self.weights = parseWeights((config or {}).get("weights", ""))
        self._members: tuple = ()
        self._schedule: List[int] = []
        self._next = 0

    def _build(self, members: Sequence[IMUX]) -> None:
        weights = [max(0, self.weights.get(m.name, 1)) for m in members]
        divisor = 0
        for w in weights:
            divisor = gcd(divisor, w)
        weights = [w // divisor if divisor else 0 for w in weights]
        current = [0] * len(members)
        total = sum(weights)
        schedule = []
        for _ in range(total):
            for i, w in enumerate(weights):
                current[i] += w
            best = max(range(len(members)), key=lambda i: (current[i], -i))
            current[best] -= total
            schedule.append(best)
        self._members = tuple(members)
        self._schedule = schedule
        self._next = 0

    def select(self, pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        members = pool.members
        if tuple(members) != self._members:
            self._build(members)
        schedule = self._schedule
        if not schedule:
            return None
        for i in range(len(schedule)):
            position = (self._next + i) % len(schedule)
            member = members[schedule[position]]
            if pool.isUsable(member):
                self._next = position + 1
                return member
        return None


#: Built-in strategies by jPOS name (and this project's additions).
BUILTIN = {
    cls.name: cls
    for cls in (
        PrimarySecondary,
        RoundRobin,
        RoundRobinWithOverride,
        SplitByDivisor,
        LeastPending,
        LeastLatency,
        WeightedRoundRobin,
    )
}
DEFAULT = PrimarySecondary.name


def pluginStrategies() -> Dict[str, IStrategy]:
    """
    Strategies installed through Twisted's plugin system, by name.
    """
    import twisted.plugins

    found = {}
    for plugin in getPlugins(IStrategy, twisted.plugins):
        found[plugin.name] = plugin
    return found


def knownNames() -> List[str]:
    return sorted(set(BUILTIN) | set(pluginStrategies()))


def strategyByName(name: Optional[str], config: Optional[Mapping] = None) -> IStrategy:
    """
    A built-in by its jPOS name, else a plugin by its name.  Unlike jPOS, an
    unknown name is an error (a typo must not reroute traffic).
    """
    name = (name or DEFAULT).strip()
    if name in BUILTIN:
        return BUILTIN[name](config or {})
    plugins = pluginStrategies()
    if name in plugins:
        return plugins[name]
    raise StrategyConfigError(f"unknown strategy {name!r} (known: {', '.join(knownNames())})")


def strategyByPath(path: str, config: Optional[Mapping] = None) -> IStrategy:
    """
    A strategy handler by dotted path (jPOS C{<strategy-handler class>}):
    a class built with the configuration dict, or an object providing
    L{IStrategy}.
    """
    try:
        obj = importNamed(path)
    except LookupError as e:
        raise StrategyConfigError(
            f"strategy handler {path!r} cannot be loaded: {e} "
            f"(built-in names: {', '.join(knownNames())})"
        ) from None
    except Exception as e:  # a broken module: SyntaxError, or raising when imported
        raise StrategyConfigError(
            f"strategy handler {path!r} cannot be loaded: {describeError(e)}"
        ) from None
    if isinstance(obj, type):
        if not IStrategy.implementedBy(obj):
            raise StrategyConfigError(
                f"strategy handler {path!r} does not implement IStrategy "
                f"(built-in names: {', '.join(knownNames())})"
            )
        try:
            obj = obj(config or {})
        except Exception as e:
            raise StrategyConfigError(
                f"strategy handler {describeCode(obj)} failed when built: {describeError(e)}"
            ) from None
    if not IStrategy.providedBy(obj):
        raise StrategyConfigError(
            f"strategy handler {path!r} does not provide IStrategy "
            f"(built-in names: {', '.join(knownNames())})"
        )
    return obj

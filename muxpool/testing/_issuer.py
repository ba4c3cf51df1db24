"""
L{MemoryIssuer}: the other end of a L{MemoryLink}, answering by rules.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

from twisted.internet.interfaces import IReactorTime

from muxpool.iso import isResponse
from muxpool.listeners import Responder
from muxpool.testing._link import MemoryLink

ANSWER, NEVER, DROP = "answer", "never", "drop"


def answer(
    request: Mapping[str, str], code: str = "00", fields: Optional[Mapping[str, str]] = None
) -> Dict[str, str]:
    """
    The response an issuer gives to C{request}: what a L{Responder} answers
    (the response MTI, the request's header, key, amount and reference
    fields), with 39 = C{code} and then C{fields}.
    """
    return Responder(code, fields).response(request)


class Rule:
    """
    What a L{MemoryIssuer} does with the requests that match: made by
    L{MemoryIssuer.when}, told what to do by its methods, which return the
    rule so they chain::

        issuer.when(mti="0200").answer("05")
        issuer.when(fields={"41": "TERM0002"}).after(2.5).answer()
        issuer.when(lambda m: int(m.get("4", 0)) > 100000).never()
        issuer.when(mti="0800").times(1).drop()

    Until told otherwise, a rule answers 39=00 at once.

    @ivar matched: how many requests it has matched.
    """

    def __init__(
        self,
        issuer: "MemoryIssuer",
        predicate: Optional[Callable[[Mapping[str, str]], bool]] = None,
        mti: Union[str, Iterable[str], None] = None,
        fields: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._issuer = issuer
        self._predicate = predicate
        self._mtis = None if mti is None else (mti,) if isinstance(mti, str) else tuple(mti)
        self._fields = dict(fields or {})
        self._responder = Responder()
        self.action = ANSWER
        self.delay = 0.0
        self.remaining: Optional[int] = None
        self.matched = 0

    def matches(self, message: Mapping[str, str]) -> bool:
        """
        Whether C{message} has the rule's MTI and field values, satisfies
        its predicate, and the rule is not spent (see L{times}).
        """
        if self.remaining == 0:
            return False
        if self._mtis is not None and message.get("t") not in self._mtis:
            return False
        if any(message.get(k) != v for k, v in self._fields.items()):
            return False
        return self._predicate is None or bool(self._predicate(message))

    def answer(self, code: str = "00", fields: Optional[Mapping[str, str]] = None) -> "Rule":
        """
        Answer with 39 = C{code} and the fixed C{fields} (see L{answer}).
        """
        self.action = ANSWER
        self._responder = Responder(code, fields)
        return self

    def never(self) -> "Rule":
        """
        Answer nothing: the request times out (L{RequestTimeout}).
        """
        self.action = NEVER
        return self

    def drop(self) -> "Rule":
        """
        Drop the connection instead of answering: what was written on it
        ends L{LinkLost}.
        """
        self.action = DROP
        return self

    def after(self, seconds: float) -> "Rule":
        """
        Answer (or drop) C{seconds} after the request, on the issuer's clock.

        @raise ValueError: the issuer has no clock.
        """
        if self._issuer.clock is None:
            raise ValueError(f"{self._issuer!r}: a delay needs a clock (MemoryIssuer(link, clock))")
        self.delay = seconds
        return self

    def times(self, count: int) -> "Rule":
        """
        Apply to the next C{count} matching requests only; then the rules
        before it (or the default answer) apply again.  C{times(0)} retires
        the rule now.
        """
        self.remaining = count
        return self

    def response(self, request: Mapping[str, str]) -> Dict[str, str]:
        """
        The answer this rule gives to C{request}.
        """
        return self._responder.response(request)


class MemoryIssuer:
    """
    An issuer at the other end of a L{MemoryLink}: each request written on
    the link is answered by the newest L{Rule} that matches it (so a test
    can override what an earlier rule said), or, if none does, with 39=00
    at once, the request's key fields echoed (see L{answer}).  Answers come
    back through L{MemoryLink.deliver}, synchronously unless a rule delays
    them; an answer meant for a connection lost since is not delivered, as
    on a real link.  The link's echoes (L{MemoryLink.probe}) go through
    the rules too: a rule that never answers them keeps a suspended member
    suspended.

    @ivar requests: every request it got, in order.
    @ivar answers: every answer it delivered, in order.
    @ivar responses: responses written to it (answers to requests it did
        not send), never answered.
    @ivar rules: the rules, oldest first.
    """

    def __init__(self, link: MemoryLink, clock: Optional[IReactorTime] = None) -> None:
        self.link = link
        self.clock = clock
        self.requests: List[Dict[str, str]] = []
        self.answers: List[Dict[str, str]] = []
        self.responses: List[Dict[str, str]] = []
        self.rules: List[Rule] = []
        self._default = Rule(self)
        link.peer = self.received

    def __repr__(self) -> str:
        return f"<MemoryIssuer on {self.link.name}>"

    def when(
        self,
        predicate: Optional[Callable[[Mapping[str, str]], bool]] = None,
        *,
        mti: Union[str, Iterable[str], None] = None,
        fields: Optional[Mapping[str, str]] = None,
    ) -> Rule:
        """
        A new rule for the requests with this MTI (or one of these), these
        exact field values and for which C{predicate(request)} is true; with
        none of them, for every request.
        """
        rule = Rule(self, predicate, mti, fields)
        self.rules.append(rule)
        return rule

    def ruleFor(self, request: Mapping[str, str]) -> Rule:
        """
        The rule that applies to C{request} now.
        """
        for rule in reversed(self.rules):
            if rule.matches(request):
                return rule
        return self._default

    def received(self, message: Dict[str, str]) -> None:
        """
        C{message} was written on the link: act on it by the rules.
        """
        if isResponse(message.get("t", "")):
            self.responses.append(message)
            return
        self.requests.append(message)
        rule = self.ruleFor(message)
        rule.matched += 1
        if rule.remaining is not None:
            rule.remaining -= 1
        if rule.action == NEVER:
            return
        connection = self.link.connection
        act: Callable[..., None]
        arg: Any  # the answer, for _answer; nothing, for _drop
        if rule.action == DROP:
            act, arg = self._drop, None
        else:
            act, arg = self._answer, rule.response(message)
        if rule.delay > 0:
            assert self.clock is not None  # Rule.after needs one
            self.clock.callLater(rule.delay, act, arg, connection)
        else:
            act(arg, connection)

    def _answer(self, response: Dict[str, str], connection: int) -> None:
        if connection != self.link.connection:
            return  # that connection is gone, and its answer with it
        self.answers.append(response)
        self.link.deliver(response)

    def _drop(self, _: object, connection: int) -> None:
        if connection == self.link.connection:
            self.link.lose()

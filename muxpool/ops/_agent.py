"""
HAProxy's agent check (C{agent-check agent-port N} on a C{server} line):
on each connection the node writes one line saying what HAProxy should do
with it, and closes.  C{drain} stops new sessions without a reload and
without closing the ones open; C{down} marks it down; C{ready up
maxconn:N} puts it back with the sessions it still takes.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger


class _AgentAnswer(Protocol):
    def connectionMade(self) -> None:
        factory: Any = self.factory
        maybeDeferred(factory.node.agentWord).addBoth(self._say)

    def _say(self, word: object) -> None:
        if not isinstance(word, str):
            word = "down"  # it cannot tell: not ready
        assert self.transport is not None
        self.transport.write(word.encode("ascii") + b"\n")
        self.transport.loseConnection()


class _AgentFactory(Factory):
    protocol = _AgentAnswer
    noisy = False

    def __init__(self, node: Any) -> None:
        self.node = node


class AgentService(StreamServerEndpointService):
    """
    Answers HAProxy's agent check on a Twisted server endpoint string
    (e.g. C{tcp:9100:interface=127.0.0.1}) with the node's state.
    """

    log = Logger()

    def __init__(self, endpoint: str, node: Any, reactor: Any) -> None:
        """
        @param node: a L{NodeState}, or anything whose C{agentWord()} gives
            the line (or a Deferred of it).
        """
        StreamServerEndpointService.__init__(
            self, serverFromString(reactor, endpoint), _AgentFactory(node)
        )
        self.setName("agent")
        self.description = endpoint
        self.port: Optional[Any] = None

    def privilegedStartService(self) -> None:
        StreamServerEndpointService.privilegedStartService(self)
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        if port is None:
            return None  # it could not listen: Twisted said why
        self.port = port
        self.log.info(
            "agent check on {endpoint}", endpoint=self.description, event="agent.listening"
        )
        return port

"""
L{WorkerSockets}: how a server listens in a worker process, on the sockets
its parent holds for it.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from muxpool._config import parseEndpoint
from muxpool.interfaces import ISocketSource

#: How the parent tells a worker which sockets it inherits:
#: {endpoint description: [file descriptor, address family]}, as JSON.
INHERITED = "MUXPOOL_INHERITED_SOCKETS"


@implementer(ISocketSource)
class WorkerSockets:
    """
    In a worker: how a server listens.  An inherited socket for its
    endpoint is adopted; a plain TCP endpoint that was not inherited is
    bound with C{SO_REUSEPORT}, beside the other workers; anything else
    listens as usual.
    """

    log = Logger()

    def __init__(self, reactor: Any, inherited: Dict[str, List[int]]) -> None:
        self.reactor = reactor
        self.inherited = dict(inherited)

    @classmethod
    def fromEnvironment(cls, reactor: Any) -> Optional["WorkerSockets"]:
        text = os.environ.get(INHERITED)
        return None if text is None else cls(reactor, json.loads(text))

    def listen(self, description: Optional[str], endpoint: Any, factory: Any) -> Deferred:
        inherited = self.inherited.get(description) if description else None
        try:
            if inherited is not None:
                fd, family = inherited
                return succeed(self.reactor.adoptStreamPort(fd, family, factory))
            parsed = parseEndpoint(description or "")
            number = parsed.port
            if parsed.kind == "tcp" and number is not None and hasattr(socket, "SO_REUSEPORT"):
                interface, backlog = parsed.interface, parsed.backlog
                family = socket.AF_INET6 if ":" in interface else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    s.bind((interface, number))
                    s.listen(backlog)
                    s.setblocking(False)
                    return succeed(self.reactor.adoptStreamPort(s.fileno(), family, factory))
        except OSError as e:
            return fail(e)
        return endpoint.listen(factory)

"""
Twisted endpoint descriptions (C{tcp:8000:interface=127.0.0.1}), read and
written in one place, and addresses as C{host:port} text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

#: Listen backlog of the TCP endpoints muxpool builds: deep enough that
#: many adaptors (re)connecting at once are not dropped by the kernel after
#: their handshake completed.
BACKLOG = 511

#: Twisted's own default backlog, when a description gives none.
DEFAULT_BACKLOG = 50

_COLON = re.compile(r"(?<!\\):")  # a colon may be escaped, as in "\:\:1"


def _segments(description: str) -> List[str]:
    return _COLON.split(description)


def _unescape(text: str) -> str:
    return text.replace("\\:", ":")


@dataclass(frozen=True)
class Endpoint:
    """
    A server or client endpoint description, split: its C{kind} (C{tcp},
    C{unix}, C{ssl}, ...), its positional C{arguments} and its
    C{name=value} C{parameters}, unescaped.
    """

    kind: str
    arguments: Tuple[str, ...] = ()
    parameters: Dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> Optional[int]:
        """
        The port of a C{tcp}, C{tcp6} or C{ssl} server endpoint; None for
        other kinds, or when its first argument is not a number.
        """
        if self.kind not in ("tcp", "tcp6", "ssl") or not self.arguments:
            return None
        text = self.arguments[0]
        return int(text) if text.isdigit() else None

    @property
    def interface(self) -> str:
        """
        The address it listens on (C{interface=}); empty: every address.
        """
        return self.parameters.get("interface", "")

    @property
    def backlog(self) -> int:
        return int(self.parameters.get("backlog", DEFAULT_BACKLOG))


def parseEndpoint(description: str) -> Endpoint:
    """
    Split an endpoint description into an L{Endpoint}.
    """
    kind, *rest = _segments(description)
    arguments, parameters = [], {}
    for part in rest:
        name, sep, value = part.partition("=")
        if sep and "\\" not in name:
            parameters[name.strip()] = _unescape(value)
        else:
            arguments.append(_unescape(part))
    return Endpoint(kind.strip().lower(), tuple(arguments), parameters)


def tcpEndpoint(port: int, interface: Optional[str] = None, backlog: int = BACKLOG) -> str:
    """
    The description of a TCP server endpoint on C{port} (and C{interface}),
    with a listen C{backlog}.
    """
    description = f"tcp:{int(port)}:backlog={backlog}"
    if interface:
        description += ":interface=" + _COLON.sub(r"\\:", interface)  # "::1" -> "\:\:1"
    return description


def hostPort(address: object) -> str:
    """
    A socket address as text: C{host:port}, or the path of a UNIX socket.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        name = getattr(address, "name", address)
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return f"{host}:{port}"

"""
Links: what owns connections and their life.

L{ChannelAdaptor} keeps one outbound channel connected (reconnecting with
backoff, keep-alive, echo, sign-on), configured by L{AdaptorSettings};
L{QServer} listens and takes inbound sessions (L{ServerSession}),
configured by L{ServerSettings}.  Both build on L{LinkBase}: the receivers
a QMUX attaches, loss observers, a ready state, and sending on the current
connection.
"""

from muxpool._config import matches, parsePatterns
from muxpool.link._adaptor import AdaptorSettings, ChannelAdaptor, Target
from muxpool.link._base import LinkBase
from muxpool.link._network import NetworkExchange
from muxpool.link._server import QServer, ServerSettings
from muxpool.link._session import ServerSession

__all__ = [
    "AdaptorSettings",
    "ChannelAdaptor",
    "LinkBase",
    "NetworkExchange",
    "QServer",
    "ServerSession",
    "ServerSettings",
    "Target",
    "matches",
    "parsePatterns",
]

"""
One connection: how it is framed and packed (L{ChannelSpec}), the Twisted
protocol that speaks it (L{ISOChannelProtocol}) and what that protocol
reports to (L{IChannelOwner}), and TLS configured with PEM files
(L{ClientTLS}, L{ServerTLS}), and the PROXY protocol header a balancer
sends first (L{readProxyHeader}).
"""

from muxpool.channel._protocol import IChannelOwner, ISOChannelProtocol
from muxpool.channel._proxy import VERSIONS, ProxyHeader, ProxyHeaderError, readProxyHeader
from muxpool.channel._spec import HEADER_KEY, ChannelSpec
from muxpool.channel._tls import (
    ACCEPT_WAIT,
    CLIENT_PROPERTIES,
    SERVER_PROPERTIES,
    ClientTLS,
    ServerTLS,
    TLSConfigError,
    describeTLSFailure,
    isTLSFailure,
    peerSubject,
    refusalOf,
    wrapTLS,
)

__all__ = [
    "ACCEPT_WAIT",
    "CLIENT_PROPERTIES",
    "ChannelSpec",
    "ClientTLS",
    "HEADER_KEY",
    "IChannelOwner",
    "ProxyHeader",
    "ProxyHeaderError",
    "ISOChannelProtocol",
    "SERVER_PROPERTIES",
    "ServerTLS",
    "TLSConfigError",
    "VERSIONS",
    "describeTLSFailure",
    "isTLSFailure",
    "peerSubject",
    "readProxyHeader",
    "refusalOf",
    "wrapTLS",
]

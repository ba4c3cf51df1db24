"""
The PROXY protocol header (HAProxy's, versions 1 and 2) that a layer-4
balancer sends before the client's bytes, saying whose connection it is.
Bytes in, a L{ProxyHeader} out: no I/O here.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Collection, Optional, Tuple

#: Version 2's first 12 bytes.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest version 1 line, CRLF included.
V1_MAX = 107
#: The longest version 2 header taken (TLVs included): balancers send far less.
V2_MAX = 16 + 536
#: What C{proxy-protocol} may say, and the versions each accepts.
VERSIONS = {"v1": ("v1",), "v2": ("v2",), "any": ("v1", "v2")}


class ProxyHeaderError(ValueError):
    """
    What came is not a valid PROXY header (of a version accepted).
    """


@dataclass(frozen=True)
class ProxyHeader:
    """
    A parsed header: C{local} for a balancer's own connection (a v2 LOCAL
    health check); else the client's C{host} and C{port} (C{ipv6} for an
    IPv6 client), None when the balancer does not know them (v1
    C{UNKNOWN}, v2 UNSPEC).
    """

    version: str
    local: bool
    host: Optional[str] = None
    port: Optional[int] = None
    ipv6: bool = False


def readProxyHeader(
    data: bytes, versions: Collection[str] = ("v1", "v2")
) -> Optional[Tuple[ProxyHeader, int]]:
    """
    The header at the start of C{data} and how many bytes it took, or None
    until more bytes come.

    @raise ProxyHeaderError: naming what is wrong.
    """
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)] and "v2" in versions:
        if len(data) < 16:
            return None
        return _v2(data)
    if data[:6] == b"PROXY "[: len(data)] and "v1" in versions:
        end = data.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(data) >= V1_MAX:
                raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX} bytes")
            return None
        return _v1(data[:end]), end + 2
    wanted = " or ".join(versions)
    raise ProxyHeaderError(f"no PROXY {wanted} header where one must come first")


def _v1(line: bytes) -> ProxyHeader:
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader("v1", False)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("PROXY v1 line is not 'PROXY TCP4|TCP6 src dst sport dport'")
    try:
        source = ipaddress.ip_address(parts[2].decode("ascii"))
        port = int(parts[4])
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError("PROXY v1 line has a bad address or port") from None
    if not 0 < port < 65536 or (source.version == 6) != (parts[1] == b"TCP6"):
        raise ProxyHeaderError("PROXY v1 line has a bad address or port")
    return ProxyHeader("v1", False, str(source), port, source.version == 6)


def _v2(data: bytes) -> Optional[Tuple[ProxyHeader, int]]:
    versionCommand, family, length = struct.unpack("!BBH", data[12:16])
    if versionCommand >> 4 != 2 or versionCommand & 0x0F > 1:
        raise ProxyHeaderError(f"PROXY v2 header with version/command byte {versionCommand:#04x}")
    size = 16 + length
    if size > V2_MAX:
        raise ProxyHeaderError(f"PROXY v2 header of {size} bytes (at most {V2_MAX})")
    if len(data) < size:
        return None
    if versionCommand & 0x0F == 0:  # LOCAL: the balancer's own connection
        return ProxyHeader("v2", True), size
    body = data[16:size]
    if family == 0x11 and length >= 12:  # TCP over IPv4
        host = str(ipaddress.IPv4Address(body[:4]))
        (port,) = struct.unpack("!H", body[8:10])
        return ProxyHeader("v2", False, host, port), size
    if family == 0x21 and length >= 36:  # TCP over IPv6
        host = str(ipaddress.IPv6Address(body[:16]))
        (port,) = struct.unpack("!H", body[32:34])
        return ProxyHeader("v2", False, host, port, True), size
    if family == 0x00:  # UNSPEC: the balancer does not know the client
        return ProxyHeader("v2", False), size
    raise ProxyHeaderError(f"PROXY v2 header for family/protocol {family:#04x} (not TCP)")

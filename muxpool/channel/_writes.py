"""
How a frame reaches the socket: at once when a request travels alone, in
Twisted's batch when many travel together.

Twisted's C{transport.write} buffers the bytes and asks the reactor to say
when the socket is writable, so they leave on the next reactor turn, in one
C{send} with whatever else was written to that connection meanwhile, after
an C{epoll_ctl} to watch the socket, one more C{epoll_wait}, and an
C{epoll_ctl} to stop watching it.  That batching is what a busy switch
wants; a lone request pays for it in latency and CPU on every hop (to the
issuer and back to the acquirer).

So a frame written while no read that held more than one frame is being
handled (see L{batching}) is sent at once, with the transport's own
C{writeSomeData} (what its C{doWrite} calls), if the transport holds
nothing unsent, so the order of the bytes is kept.  What the socket does
not take, and every frame written while a read of several frames is
handled, goes through C{transport.write} as before.  A transport that is not
itself a Twisted socket transport without TLS (a TLS wrapper, a connection
after C{startTLS}, the in-memory transports of tests), or one that is
closing or aborted, always gets C{transport.write}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor


class _Batching:
    """
    How many reads of more than one frame are being handled now (nested:
    a read's requests are written inside its handling).
    """

    depth = 0


batching = _Batching()


def sendFrame(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}: now, if it travels alone and the
    transport has nothing unsent; else buffered by the transport.
    """
    if not batching.depth and _idle(transport):
        written = transport.writeSomeData(data)
        if isinstance(written, int) and written > 0:
            data = data[written:]
        # else (nothing taken, or the connection is lost) the transport
        # has it all, and its doWrite sees what became of the connection
    if data:
        transport.write(data)


def _idle(transport: Any) -> bool:
    """
    Whether C{transport} is itself one of Twisted's socket transports, open
    (not closing, not aborted), without TLS, with nothing unsent (its list
    buffer and its byte buffer are empty).  The list buffer's length, the
    abort and the TLS flags are private attributes of Twisted's
    C{FileDescriptor} and TCP connection: where the length is missing, the
    transport is not taken as idle, and writes go through
    C{transport.write}.
    """
    return (
        # itself a socket transport: a wrapper (TLS) would lend it its own
        # attributes, and the bytes would skip the wrapper
        isinstance(transport, FileDescriptor)
        and getattr(transport, "_tempDataLen", None) == 0
        and not transport.dataBuffer
        and bool(transport.connected)
        and not transport.disconnecting
        and not getattr(transport, "_aborting", False)  # abortConnection: nothing more
        and not getattr(transport, "TLS", False)  # startTLS: bytes go through TLS
        and not getattr(transport, "_writeDisconnected", True)
    )

"""
How a frame reaches the socket: at once when a request travels alone, and
in one C{send} per connection when the read of many frames that caused it
is handled.

Twisted's C{transport.write} buffers the bytes and asks the reactor to say
when the socket is writable, so they leave on the next reactor turn, in one
C{send} with whatever else was written to that connection meanwhile, after
an C{epoll_ctl} to watch the socket, one more C{epoll_wait}, and an
C{epoll_ctl} to stop watching it: per connection written to, in every busy
turn.  A lone request pays for that in latency and CPU on every hop (to the
issuer and back to the acquirer), and a pool of many members pays it on
each member's connection.

So:
 - a frame written while no read that held more than one frame is being
   handled (see L{batching}) is sent at once, with the transport's own
   C{writeSomeData} (what its C{doWrite} calls);
 - the frames written while such a read is handled are gathered per
   connection, and each connection's are sent in one C{writeSomeData} when
   the outermost such read is handled (L{_Batching.end}): still inside that
   read, so nothing (a poll, a close, a half-close) comes between them and
   the socket that did not come before with C{transport.write};
 - a frame written to a connection that has frames gathered joins them, so
   the order of the bytes is kept.

Only when the transport holds nothing unsent: what the socket does not take
goes through C{transport.write}, and so does every frame written while the
transport holds bytes.  A transport that is not itself a Twisted socket
transport without TLS (a TLS wrapper, a connection after C{startTLS}, the
in-memory transports of tests), or one that is closing or aborted, always
gets C{transport.write}.
"""

from __future__ import annotations

from typing import Any, Dict, List

from twisted.internet.abstract import FileDescriptor
from twisted.logger import Logger

from muxpool._support import describeError

log = Logger()


class _Batching:
    """
    How many reads of more than one frame are being handled now (nested:
    a read's requests are written inside its handling), and the frames
    gathered per transport meanwhile.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.gathered: Dict[Any, List[bytes]] = {}

    def begin(self) -> None:
        """
        A read of more than one frame is being handled.
        """
        self.depth += 1

    def end(self) -> None:
        """
        It is handled: when no other is, send what was gathered, one
        C{send} per transport.  A transport that fails is logged and
        aborted (its peer sees the connection drop, and what was waiting
        on it is told), and the others are still sent.
        """
        self.depth -= 1
        if self.depth or not self.gathered:
            return
        gathered, self.gathered = self.gathered, {}
        for transport, frames in gathered.items():
            try:
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                if _idle(transport):
                    _sendNow(transport, data)
                else:  # closed, half-closed or aborted meanwhile: as its buffer is
                    transport.write(data)
            except Exception as e:
                log.error(
                    "frames not written to {transport}, connection aborted: {error}",
                    transport=transport,
                    error=describeError(e),
                )
                try:
                    transport.abortConnection()
                except Exception:
                    pass  # it is gone already


batching = _Batching()


def sendFrame(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}: after the frames gathered for it, if any;
    else gathered while a read of several frames is handled; else now, if
    the transport has nothing unsent; else buffered by the transport.
    """
    frames = batching.gathered.get(transport)
    if frames is not None:
        frames.append(data)
    elif not _idle(transport):
        transport.write(data)
    elif batching.depth:
        batching.gathered[transport] = [data]
    else:
        _sendNow(transport, data)


def _sendNow(transport: Any, data: bytes) -> None:
    """
    Give C{data} to the socket now; what it does not take to
    C{transport.write}.
    """
    written = transport.writeSomeData(data)
    if isinstance(written, int) and written > 0:
        data = data[written:]
    # else (nothing taken, or the connection is lost) the transport has it
    # all, and its doWrite sees what became of the connection
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

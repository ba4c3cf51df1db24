"""
The outcomes of a request that are not a response.

Every request ends in exactly one of: a response, L{NotSent} (the message
never reached a socket, so retrying is safe) or L{OutcomeUnknown} (it may
have reached the issuer; the caller reverses or retries by its own rules).
"""


class RequestError(Exception):
    """
    Base of the two failure outcomes.
    """


class NotSent(RequestError):
    """
    The message never reached a socket.  Safe to retry, here or elsewhere.
    """


class LinkNotReady(NotSent):
    """
    The link was not ready (down, or not signed on) before the deadline.
    """


class DuplicateKey(NotSent):
    """
    A request with the same key is already pending; the first is kept.
    """


class MissingKey(NotSent):
    """
    The message carries none of the key fields, so no response could match it.
    """


class EncodeFailed(NotSent):
    """
    The message could not be packed or framed.
    """


class NoMUXAvailable(NotSent):
    """
    No member of a pool was usable before the deadline.
    """


class NoCapacity(NotSent):
    """
    A MUX at its C{max-in-flight} (or every member of a pool at theirs)
    refused the request at once, instead of letting it queue into a
    timeout; nothing was sent.
    """

    @classmethod
    def at(cls, name: str, inFlight: int, limit: object) -> "NoCapacity":
        """
        The refusal of MUX C{name}, holding C{inFlight} of its C{limit}.
        """
        return cls(f"{name}: {inFlight} requests in flight (max-in-flight {limit}) - not sent")


class StrategyFailed(NotSent):
    """
    A pool's strategy raised while choosing a member; nothing was sent.
    """


class AnswerUndelivered(NotSent):
    """
    An answer to an inbound request could not be written (its client is
    gone).  Whoever raised it has logged it, with what to reverse it by.
    """


class OutcomeUnknown(RequestError):
    """
    The message was written; whether the issuer acted on it is unknown.
    """


class RequestTimeout(OutcomeUnknown):
    """
    No response before the deadline.
    """


class LinkLost(OutcomeUnknown):
    """
    The connection the message was written on dropped before its response.
    """


class RequestCancelled(RequestError):
    """
    The caller cancelled the request's Deferred.  Always also one of
    L{CancelledBeforeWrite} (a L{NotSent}) or L{CancelledAfterWrite} (an
    L{OutcomeUnknown}), so cancelling never hides whether the issuer may
    have acted.
    """


class CancelledBeforeWrite(RequestCancelled, NotSent):
    """
    Cancelled before the message reached a socket: nothing was sent.
    """


class CancelledAfterWrite(RequestCancelled, OutcomeUnknown):
    """
    Cancelled after the message was written: the issuer may have acted.  A
    response that still arrives is counted as late.
    """

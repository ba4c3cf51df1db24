"""
Card data out of logs: the one place that renders a message for a log line.

Every log line in muxpool that shows message content goes through
L{maskMessage}.  Raw frames and pyiso8583 error objects (which carry raw
bytes) are never logged.
"""

from typing import Collection, Iterable, Mapping, Tuple, Union

#: Shown as first 6 + last 4 (PAN, expiry, extended PAN).
PARTIAL = frozenset({"2", "14", "34"})
#: Hidden entirely (track 2, track 3, track 1, PIN block, ICC data).
HIDDEN = frozenset({"35", "36", "45", "52", "55"})

_SKIP = frozenset({"p", "1", "65"})


def maskValue(key: str, value: str, binaryFields: Iterable[str] = ()) -> str:
    """
    The loggable form of one field: masked or hidden card data; a value
    with control characters (a carriage return that would forge a log
    line) or spaces at its ends shown escaped, as Python's repr.
    """
    if key in HIDDEN or key in binaryFields:
        return "[hidden]"
    if key in PARTIAL:
        text = str(value)
        if len(text) > 10:
            return text[:6] + "*" * (len(text) - 10) + text[-4:]
        return "*" * len(text)
    text = str(value)
    return repr(text) if not text.isprintable() or text != text.strip() else text


def maskMessage(message: Mapping[str, str], binaryFields: Iterable[str] = ()) -> str:
    """
    Render C{message} on one line with card data masked or hidden.

    @param binaryFields: ids of the packager's binary fields, hidden too.
    """
    binary = frozenset(binaryFields)

    def order(key: str) -> Tuple[int, Union[int, str]]:
        return (0, 0) if key == "t" else (1, int(key)) if key.isdigit() else (2, key)

    parts = []
    for key in sorted(message, key=order):
        if key in _SKIP:
            continue
        parts.append(f"{key}={maskValue(key, message[key], binary)}")
    return "{" + " ".join(parts) + "}"


def binaryFieldsOf(holder: object) -> Collection[str]:
    """
    The binary field ids of the packager behind C{holder} (a link, a
    session, a channel spec), or none if it has no packager.
    """
    spec = getattr(holder, "spec", holder)
    return getattr(getattr(spec, "packager", None), "binaryFields", ())


#: The fields an operator reverses a transaction by: trace number, terminal,
#: retrieval reference; with the MTI and the response code.
REVERSAL_FIELDS = ("11", "41", "37")


def describeForReversal(message: Mapping[str, str]) -> str:
    """
    One line to reverse C{message} by: its MTI, 11, 41 and 37 where present
    (masked as any field would be) and its response code.
    """
    parts = [message.get("t", "????")]
    parts.extend(f"{f}={maskValue(f, message[f])}" for f in REVERSAL_FIELDS if f in message)
    parts.append(f"39={maskValue('39', message['39'])}" if "39" in message else "39=none")
    return " ".join(parts)

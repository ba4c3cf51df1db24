"""
Hypothesis strategies: random valid messages for a jPOS-layout packager, and
bytes and messages near valid ones.
"""

from hypothesis import strategies as st

_DIGITS = "0123456789"
# Printable ASCII and latin-1: every character jPOS's ASCII and EBCDIC fields carry.
_TEXT = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
)


def fieldValue(cls: str, length: int):
    """
    Valid values for one jPOS field class: full length or shorter where jPOS
    pads, empty or odd-length where a variable field allows it.
    """
    fixed = "LL" not in cls
    if cls.endswith("BINARY"):
        size = st.just(length) if fixed else st.integers(0, length)
        return size.flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(
            lambda b: b.hex().upper()
        )
    if cls.endswith("AMOUNT"):
        return st.tuples(st.sampled_from("CD"), st.text(_DIGITS, max_size=length - 1)).map("".join)
    alphabet = _DIGITS if cls.endswith("NUM") or cls.endswith("NUMERIC") else _TEXT
    if fixed:
        return st.text(alphabet, min_size=0, max_size=length)
    return st.text(alphabet, min_size=0, max_size=min(length, 120))


def messages(packager):
    """
    Random messages valid for C{packager}'s fields (2-128).
    """
    fields = {
        fid: fieldValue(cls, length)
        for fid, (cls, length, _, _) in packager.fields.items()
        if 2 <= fid <= 128 and fid != 65
    }
    mti = st.sampled_from(["0100", "0110", "0200", "0210", "0400", "0410", "0800", "0810"])
    chosen = st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=12, unique=True)

    @st.composite
    def build(draw):
        message = {"t": draw(mti)}
        for fid in draw(chosen):
            message[str(fid)] = draw(fields[fid])
        return message

    return build()


def _fieldKeys(packager):
    return sorted((k for k in packager.spec if k.isdigit() and k not in ("1", "65")), key=int)


#: Values of every kind a caller might put in a message by mistake.
_ANY_VALUE = st.one_of(
    st.text(max_size=24),
    st.text("0123456789ABCDEFabcdef =D", max_size=40),
    st.integers(0, 1100).map(lambda n: "9" * n),
    st.binary(max_size=8),
    st.integers(),
    st.none(),
)


def nearMessages(packager):
    """
    Messages near valid ones for C{packager}: a valid one, then a few keys
    set to any value (too long, not hex, not latin-1, not a str), keys it
    lacks or ignores, or no MTI.
    """
    keys = _fieldKeys(packager) + ["t", "0", "1", "65", "129", "p", "h", "x", "007"]

    @st.composite
    def build(draw):
        message = dict(draw(messages(packager)))
        for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
            message[key] = draw(_ANY_VALUE)
        if draw(st.integers(0, 9)) == 0:
            message.pop("t")
        return message

    return build()


def frames(packager):
    """
    Bytes for C{packager} to unpack: random, and packed messages cut short,
    with a byte changed, or with bytes added.
    """

    @st.composite
    def mutated(draw):
        data = bytearray(packager.pack(draw(messages(packager))))
        how = draw(st.sampled_from(["cut", "change", "insert", "append"]))
        at = draw(st.integers(0, len(data)))
        if how == "cut":
            del data[at:]
        elif how == "change" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        else:
            data += draw(st.binary(min_size=1, max_size=3))
        return bytes(data)

    return st.one_of(st.binary(max_size=300), mutated())

"""
Hypothesis strategies: random valid messages for a jPOS-layout packager.
"""

from hypothesis import strategies as st

_DIGITS = "0123456789"
_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def fieldValue(cls: str, length: int):
    fixed = not ("LL" in cls)
    if cls.endswith("BINARY"):
        size = st.just(length) if fixed else st.integers(1, length)
        return size.flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(
            lambda b: b.hex().upper()
        )
    if cls.endswith("AMOUNT"):
        return st.tuples(st.sampled_from("CD"), st.text(_DIGITS, min_size=length - 1, max_size=length - 1)).map("".join)
    alphabet = _DIGITS if cls.endswith("NUM") or cls.endswith("NUMERIC") else _TEXT
    if fixed:
        return st.text(alphabet, min_size=length, max_size=length)
    return st.text(alphabet, min_size=1, max_size=min(length, 120))


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

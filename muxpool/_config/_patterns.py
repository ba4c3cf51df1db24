"""
jPOS's address lists (a server's C{allow}, C{deny}; our C{proxy-from}).
"""

from typing import Iterable, Sequence, Tuple, Union


def parsePatterns(text: Union[str, Sequence[str], None]) -> Tuple[str, ...]:
    """
    jPOS's allow/deny lists: addresses separated by commas or spaces, each
    exact or ending in C{*} (a prefix).
    """
    if not text:
        return ()
    if isinstance(text, str):
        text = text.replace(",", " ").split()
    return tuple(text)


def matches(address: str, patterns: Iterable[str]) -> bool:
    """
    Whether C{address} is one of C{patterns} (see L{parsePatterns}).
    """
    for pattern in patterns:
        if pattern.endswith("*"):
            if address.startswith(pattern[:-1]):
                return True
        elif address == pattern:
            return True
    return False

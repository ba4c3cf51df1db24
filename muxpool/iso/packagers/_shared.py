"""
Which unpacked values messages share: see L{SHARED_MAX}.  The compiled
unpack (L{muxpool.iso.packagers.compileCodec}) keeps one string per value
of these fields, per packager.
"""

#: Unpacked values shared between messages, per packager, before the table
#: is emptied: a switch holds tens of thousands of requests while an issuer
#: is slow, and many of their fields repeat, so each such value is kept
#: once, not once per request.  Only the fields in L{SHARED_FIELDS} (and the
#: MTI), up to L{SHARED_LENGTH} characters: an allow list, so no account
#: data (a PAN in field 2, 102 or 103, a private field) is ever kept beyond
#: its message.  A value new to the table is added to it: past this many,
#: it is emptied.
SHARED_MAX = 4096
SHARED_LENGTH = 40
#: Fields whose values repeat from message to message and say nothing of a
#: card or an account: amounts, dates and times (to the second), and the
#: codes and ids of the terminal, merchant, acquirer and transaction kind.
SHARED_FIELDS = frozenset(
    "3 4 5 6 7 9 10 12 13 15 16 17 18 19 20 21 22 24 25 26 27 32 33 39 40 41 42 43 "
    "49 50 51 70".split()
)

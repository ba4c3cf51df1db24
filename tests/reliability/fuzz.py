"""
Run one fuzz target of tests/reliability/fuzzing.py under atheris
(libFuzzer, coverage-guided; CPython), from the checkout:

    .venv/bin/python -m tests.reliability.fuzz frames -max_total_time=600 tests/reliability/corpus/frames

The arguments after the target are libFuzzer's.  New interesting inputs
land in the corpus folder: commit them.  A crash is written as
C{crash-*} beside (or under C{-artifact_prefix}); add it to the corpus
once fixed, with a regression test beside the unit tests.
"""

import sys

import atheris

# Instrument muxpool and pyiso8583 as they are imported (instrumenting
# everything already loaded takes most of a minute).
with atheris.instrument_imports(include=["muxpool", "iso8583"]):
    from tests.reliability.fuzzing import TARGETS


def main(argv):
    name, args = argv[1], argv[2:]
    atheris.Setup([argv[0], *args], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

"""
The command-line tools' argument handling and failure outcomes.
"""

import pytest

from muxpool.cli import parser
from tests.deployfiles import freePort
from tests.twistdproc import tool


def test_fields_parse():
    args = parser().parse_args(["send", "-f", "4=000000001000", "--field", "41=TERM0001"])
    assert args.field == [("4", "000000001000"), ("41", "TERM0001")]
    assert args.endpoint == "tcp:127.0.0.1:8000" and args.mti == "0200"


def test_bad_field_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["send", "-f", "four=1"])
    assert info.value.code == 2
    assert "--field wants N=value" in capsys.readouterr().err


def test_unknown_channel_is_reported():
    result = tool("send", "--channel", "FooChannel")
    assert result.returncode != 0
    assert "unknown channel class 'FooChannel'" in result.stderr


def test_nobody_listening_is_not_sent():
    result = tool("send", "--endpoint", f"tcp:127.0.0.1:{freePort()}", "--timeout", "1")
    assert result.returncode == 2
    assert "not sent" in result.stdout

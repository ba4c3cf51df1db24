"""
The library's own helpers, through their package's face: settings as
descriptors write them, endpoint descriptions, timers.
"""

import pytest
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock

from muxpool._config import (
    BACKLOG,
    hostPort,
    milliseconds,
    parseEndpoint,
    parseFieldList,
    tcpEndpoint,
    yesNo,
)
from muxpool._support import cancelTimer


@pytest.mark.parametrize("text", ["true", "YES", " 1 ", "on", True])
def test_yes(text):
    assert yesNo(text, False) is True


@pytest.mark.parametrize("text", ["false", "no", "0", "off", "", "maybe", False])
def test_no(text):
    assert yesNo(text, True) is False


def test_a_setting_not_given_takes_its_default():
    assert yesNo(None, True) is True
    assert yesNo(None, None) is None


def test_milliseconds_are_read_as_seconds():
    assert milliseconds("2500") == 2.5
    assert milliseconds(" 10 ") == 0.01
    assert milliseconds(None, 3.0) == 3.0
    assert milliseconds("", 3.0) == 3.0
    with pytest.raises(ValueError):
        milliseconds("ten")


def test_field_lists_take_commas_and_spaces():
    assert parseFieldList("41, 11") == ("41", "11")
    assert parseFieldList(" 41 11,,37 ") == ("41", "11", "37")
    assert parseFieldList("") == ()


def test_a_tcp_endpoint_is_split_into_its_parts():
    endpoint = parseEndpoint("tcp:8000:interface=127.0.0.1:backlog=10")
    assert (endpoint.kind, endpoint.port, endpoint.interface, endpoint.backlog) == (
        "tcp",
        8000,
        "127.0.0.1",
        10,
    )
    plain = parseEndpoint("tcp:8000")
    assert (plain.port, plain.interface, plain.backlog) == (8000, "", 50)


def test_escaped_colons_stay_in_their_value():
    assert parseEndpoint(r"tcp6:8000:interface=\:\:1").interface == "::1"


def test_only_tcp_and_ssl_have_a_port():
    assert parseEndpoint("unix:/tmp/switch.sock").port is None
    assert parseEndpoint("tcp:http").port is None
    assert parseEndpoint("ssl:8443:privateKey=k.pem").port == 8443


def test_built_endpoints_read_back():
    description = tcpEndpoint(9000, "::1")
    endpoint = parseEndpoint(description)
    assert (endpoint.port, endpoint.interface, endpoint.backlog) == (9000, "::1", BACKLOG)
    assert parseEndpoint(tcpEndpoint(9000)).interface == ""


def test_addresses_as_text():
    assert hostPort(IPv4Address("TCP", "127.0.0.2", 5555)) == "127.0.0.2:5555"
    assert hostPort(UNIXAddress("/tmp/s.sock")) == "/tmp/s.sock"


def test_a_timer_is_cancelled_once_and_forgotten():
    clock = Clock()
    fired = []
    timer = clock.callLater(1, fired.append, 1)
    assert cancelTimer(timer) is None
    assert clock.getDelayedCalls() == []
    cancelTimer(timer)  # already cancelled: nothing
    cancelTimer(None)
    clock.advance(2)
    assert fired == []

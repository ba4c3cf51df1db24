"""
Packagers against jPOS 2.1.10's own bytes, both directions, and their errors.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from muxpool.interfaces import IPackager
from muxpool.iso import defaultFields
from muxpool.iso.packagers import (
    SHARED_FIELDS,
    SHARED_MAX,
    PackagerConfigError,
    PackError,
    SpecPackager,
    UnpackError,
    getPackager,
    loadGenericPackager,
    registerPackager,
)
from tests.conftest import interopLines, interopPath

VECTOR_SETS = [
    ("packager/iso87a.jsonl", "ISO87A", None),
    ("packager/iso87b.jsonl", "ISO87B", None),
    ("packager/custom.jsonl", "GenericPackager", "packager/custom-packager.xml"),
    ("packager/custom-abitmap.jsonl", "GenericPackager", "packager/custom-abitmap-packager.xml"),
]


def vectorMessage(vector):
    message = {"t": vector["mti"]}
    for key, value in vector["fields"].items():
        message[key] = value[4:] if value.startswith("hex:") else value
    return message


def packagerFor(name, config):
    return getPackager(name, interopPath(config) if config else None)


@pytest.mark.parametrize("vectors,name,config", VECTOR_SETS)
def test_pack_matches_jpos(vectors, name, config):
    packager = packagerFor(name, config)
    lines = interopLines(vectors)
    assert len(lines) >= 100
    for vector in lines:
        assert packager.pack(vectorMessage(vector)).hex().upper() == vector["hex"], vector["id"]


@pytest.mark.parametrize("vectors,name,config", VECTOR_SETS)
def test_unpack_matches_jpos(vectors, name, config):
    packager = packagerFor(name, config)
    for vector in interopLines(vectors):
        message = packager.unpack(bytes.fromhex(vector["hex"]))
        message.pop("p")
        message.pop("1", None)
        assert message == vectorMessage(vector), vector["id"]


def test_pack_does_not_modify_message():
    message = {"t": "0800", "11": "1", "70": "301"}
    before = dict(message)
    getPackager("ISO87A").pack(message)
    assert message == before


def test_jpos_padding_on_pack():
    packager = getPackager("ISO87A")
    data = packager.pack({"t": "0200", "11": "42", "41": "T1"})
    back = packager.unpack(data)
    assert back["11"] == "000042"
    assert back["41"] == "T1      "


def test_iso87b_amount_sign():
    packager = getPackager("ISO87B")
    data = packager.pack({"t": "0200", "28": "D123"})
    assert packager.unpack(data)["28"] == "D00000123"


def test_names():
    a = getPackager("org.jpos.iso.packager.ISO87APackager")
    assert a is getPackager("ISO87A") is getPackager("iso87a")
    assert getPackager("org.jpos.iso.packager.ISO87BPackager").name == "ISO87B"
    generic = getPackager(
        "org.jpos.iso.packager.GenericPackager", interopPath("packager/custom-packager.xml")
    )
    assert "52" in generic.binaryFields
    for packager in (a, generic):
        assert verifyObject(IPackager, packager)


def test_unknown_name_lists_known():
    with pytest.raises(PackagerConfigError, match="ISO87A"):
        getPackager("ISO93X")


def test_generic_needs_config():
    with pytest.raises(PackagerConfigError, match="packager-config"):
        getPackager("GenericPackager")


def test_register_own_spec():
    from iso8583.specs import default_ascii

    registerPackager("my-ascii", default_ascii)
    packager = getPackager("my-ascii")
    assert verifyObject(IPackager, packager)
    assert isinstance(packager, SpecPackager)
    assert packager.unpack(packager.pack({"t": "0800", "70": "301"}))["70"] == "301"


def test_own_spec_errors_are_pack_and_unpack_errors_naming_the_field():
    from iso8583.specs import default_ascii

    spec = {k: v for k, v in default_ascii.items() if k != "6"}
    packager = SpecPackager("no-6", spec)
    with pytest.raises(PackError, match="field 6: not defined"):
        packager.pack({"t": "0200", "6": "000000000100"})
    data = bytearray(packager.pack({"t": "0200", "3": "000000"}))
    data[4:20] = b"2400000000000000"  # fields 3 and 6
    with pytest.raises(UnpackError) as info:
        packager.unpack(bytes(data))
    assert (info.value.field, info.value.position) == ("6", 4)


def writeXml(tmp_path, body):
    path = tmp_path / "p.xml"
    path.write_text(f"<isopackager>{body}</isopackager>")
    return str(path)


BASE = (
    '<isofield id="0" length="4" class="org.jpos.iso.IFA_NUMERIC"/>'
    '<isofield id="1" length="16" class="org.jpos.iso.IFA_BITMAP"/>'
)


@pytest.mark.parametrize(
    "body,expected",
    [
        (
            BASE + '<isofield id="2" length="19" class="org.jpos.iso.IFX_WHATEVER"/>',
            r"field 2: unknown field class 'IFX_WHATEVER'",
        ),
        (
            BASE + '<isofield id="3" length="six" class="org.jpos.iso.IFA_NUMERIC"/>',
            r"field 3: bad length 'six'",
        ),
        (
            BASE + '<isofield id="4" length="0" class="org.jpos.iso.IFA_NUMERIC"/>',
            r"field 4: bad length 0",
        ),
        (BASE + '<isofield id="5" length="2"/>', r"field 5: no class"),
        (
            '<isofield id="1" length="16" class="org.jpos.iso.IFA_BITMAP"/>',
            r"field 0 \(MTI\) is not defined",
        ),
    ],
)
def test_generic_errors_name_file_and_field(tmp_path, body, expected):
    path = writeXml(tmp_path, body)
    with pytest.raises(PackagerConfigError, match=expected) as info:
        loadGenericPackager(path)
    assert path in str(info.value)


def test_generic_malformed_file(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<isopackager><isofield id=")
    with pytest.raises(PackagerConfigError, match="bad.xml"):
        loadGenericPackager(str(path))


def test_pack_error_names_field():
    with pytest.raises(PackError, match="field 3"):
        getPackager("ISO87A").pack({"t": "0200", "3": "1234567"})


def test_unpack_error_names_field_not_bytes():
    data = getPackager("ISO87A").pack({"t": "0200", "2": "4111111111111111", "3": "000000"})
    with pytest.raises(UnpackError) as info:
        getPackager("ISO87A").unpack(data[:-3])
    assert "field 3" in str(info.value)
    assert "4111111111111111" not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_unpack_random_bytes_raises_only_unpackerror(data):
    for name in ("ISO87A", "ISO87B"):
        try:
            getPackager(name).unpack(data)
        except UnpackError:
            pass


def test_an_edited_generic_packager_file_is_read_again(tmp_path):
    # An edited XML is read again (a redeploy gets the new field
    # definitions); an unchanged one is read once.
    field11 = '<isofield id="11" length="{}" class="org.jpos.iso.IFA_NUMERIC"/>'
    path = writeXml(tmp_path, BASE + field11.format(6))
    first = getPackager("GenericPackager", path)
    assert getPackager("GenericPackager", path) is first  # unchanged: read once
    writeXml(tmp_path, BASE + field11.format(12))
    second = getPackager("GenericPackager", path)
    message = {"t": "0800", "11": "1"}
    assert len(second.pack(message)) == len(first.pack(message)) + 6


def test_generic_keeps_jpos_doctype_line(tmp_path):
    """
    jPOS's GenericPackager files start with a DOCTYPE naming an external
    DTD: read as ever (the DTD itself is never fetched).
    """
    path = tmp_path / "jpos.xml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE isopackager SYSTEM "genericpackager.dtd">\n'
        f"<isopackager>{BASE}</isopackager>"
    )
    assert loadGenericPackager(str(path)).name == "jpos.xml"


def test_generic_refuses_entities_and_oversized_files(tmp_path):
    """
    A packager file that declares entities (an entity bomb) or is larger
    than the limit is refused, naming it, before anything expands.
    """
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<!DOCTYPE isopackager [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        '<isopackager><isofield id="0" length="4" name="&b;" '
        'class="org.jpos.iso.IFA_NUMERIC"/></isopackager>'
    )
    with pytest.raises(PackagerConfigError, match=r"bomb.xml: an entity declaration"):
        loadGenericPackager(str(bomb))
    huge = tmp_path / "huge.xml"
    huge.write_text(f"<isopackager>{BASE}<!-- {'x' * (1024 * 1024)} --></isopackager>")
    with pytest.raises(PackagerConfigError, match=r"huge.xml: larger than the 1024 KiB"):
        loadGenericPackager(str(huge))


def test_unpacked_values_that_repeat_are_kept_once_and_card_data_never_shared():
    # A switch holds many requests while an issuer is slow: values they
    # share (terminal, merchant, currency, MTI) are one string, not one each.
    packager = getPackager("ISO87A")
    first, second = (packager.unpack(packager.pack(defaultFields("0200", stan))) for stan in (1, 2))
    for field in ("t", "3", "41", "42", "49"):
        assert first[field] is second[field]
    assert first["2"] == second["2"] and first["2"] is not second["2"]  # card data
    # an allow list: no card or account field is ever kept in the table
    assert not SHARED_FIELDS & {"2", "14", "23", "34", "35", "36", "45", "52", "55", "102", "103"}
    account = {"t": "0200", "11": "000001", "102": "4111111111111111", "103": "4111111111111111"}
    unpacked = [packager.unpack(packager.pack(account)) for _ in range(2)]
    assert unpacked[0]["102"] is not unpacked[1]["102"]
    assert first["11"] != second["11"]
    shared = packager.unpack.__globals__["SHARED"]
    for stan in range(3, SHARED_MAX + 100):  # unique values fill it: it is emptied
        packager.unpack(packager.pack(defaultFields("0200", stan)))
        assert len(shared) <= SHARED_MAX + len(first)

"""
The compiled codec against pyiso8583's own encode/decode, the generic path
and jPOS's bytes: the same bytes, dicts and errors, for every packager.

"Strict" codecs are compiled with fallbacks that raise L{Missed}: they show
what the compiled code takes itself, so a test can tell it never hands a
valid message to the generic path, and never takes one the generic path
refuses.
"""

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iso8583.specs import default, default_ascii

from muxpool.iso.packagers import PackError, SpecPackager, UnpackError, compileCodec
from tests.conftest import interopLines
from tests.strategies import frames, messages, nearMessages
from tests.test_packagers import VECTOR_SETS, packagerFor, vectorMessage

PACKAGERS = [
    ("ISO87A", None),
    ("ISO87B", None),
    ("GenericPackager", "packager/custom-packager.xml"),
    ("GenericPackager", "packager/custom-abitmap-packager.xml"),
]
IDS = ["ISO87A", "ISO87B", "custom", "custom-abitmap"]


class Missed(Exception):
    """
    The compiled code handed its input to the generic path.
    """


def _miss(_):
    raise Missed()


_strict = {}


def strict(packager):
    """
    C{(pack, unpack)} compiled for C{packager}, raising L{Missed} where the
    real ones fall back.
    """
    if packager not in _strict:
        _strict[packager] = compileCodec(
            packager.name, packager.spec, packager.toWire, packager.fromWire, _miss, _miss
        )
    return _strict[packager]


def outcome(fn, *args):
    """
    What C{fn(*args)} gives: C{("ok", result)} or C{("error", type, str)}.
    """
    try:
        return ("ok", fn(*args))
    except (PackError, UnpackError) as e:
        return ("error", type(e), str(e))


@pytest.fixture(scope="module", params=PACKAGERS, ids=IDS)
def packager(request):
    name, config = request.param
    return packagerFor(name, config)


def test_builtin_and_generic_packagers_are_compiled(packager):
    assert packager.notCompiled is None
    assert packager.pack != packager.packGeneric
    assert packager.unpack != packager.unpackGeneric


@pytest.mark.parametrize("vectors,name,config", VECTOR_SETS)
def test_every_jpos_vector_is_packed_and_unpacked_by_the_compiled_code(vectors, name, config):
    packager = packagerFor(name, config)
    pack, unpack = strict(packager)
    for vector in interopLines(vectors):
        message = vectorMessage(vector)
        assert pack(message).hex().upper() == vector["hex"], vector["id"]
        unpacked = unpack(bytes.fromhex(vector["hex"]))
        assert unpacked == packager.unpackGeneric(bytes.fromhex(vector["hex"])), vector["id"]
        unpacked.pop("p")
        unpacked.pop("1", None)
        assert unpacked == message, vector["id"]


@pytest.mark.parametrize("vectors,name,config", VECTOR_SETS)
def test_compiled_code_equals_bare_pyiso8583_on_the_same_spec(vectors, name, config):
    """
    pyiso8583's encode, given the values after the packager's transforms,
    writes the compiled code's bytes; its decode, followed by the transforms
    back, reads the compiled code's dict.
    """
    packager = packagerFor(name, config)
    pack, unpack = strict(packager)
    for vector in interopLines(vectors):
        message = vectorMessage(vector)
        doc = {k: packager.toWire[k](v) if k in packager.toWire else v for k, v in message.items()}
        encoded, _ = iso8583.encode(doc, packager.spec)
        assert pack(message) == bytes(encoded), vector["id"]
        decoded, _ = iso8583.decode(bytes(encoded), packager.spec)
        for key, transform in packager.fromWire.items():
            if key in decoded:
                decoded[key] = transform(decoded[key])
        assert unpack(bytes(encoded)) == decoded, vector["id"]


@settings(max_examples=200, deadline=None)
@given(which=st.sampled_from(PACKAGERS), data=st.data())
def test_random_messages_compiled_equals_generic(which, data):
    packager = packagerFor(*which)
    message = data.draw(messages(packager))
    pack, unpack = strict(packager)
    packed = pack(message)
    assert packed == packager.packGeneric(message)
    unpacked = unpack(packed)
    assert unpacked == packager.unpackGeneric(packed)
    assert list(unpacked) == list(packager.unpackGeneric(packed))  # same key order
    assert unpack(bytearray(packed)) == packager.unpackGeneric(packed)


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from(PACKAGERS), data=st.data())
def test_messages_near_valid_pack_or_fail_alike(which, data):
    """
    A message the generic path refuses, the compiled code hands to it, so
    both raise the same PackError; one it packs, the compiled code packs to
    the same bytes.
    """
    packager = packagerFor(*which)
    message = data.draw(nearMessages(packager))
    before = dict(message)
    generic = outcome(packager.packGeneric, message)
    assert outcome(packager.pack, message) == generic
    try:
        compiled = ("ok", strict(packager)[0](message))
    except Missed:
        assert generic[0] == "error"
    else:
        assert compiled == generic
    assert message == before


@settings(max_examples=400, deadline=None)
@given(which=st.sampled_from(PACKAGERS), data=st.data())
def test_garbage_and_damaged_frames_unpack_or_fail_alike(which, data):
    """
    Random bytes, and packed messages cut short, changed or extended: only
    UnpackError, from both paths, and the same one.
    """
    packager = packagerFor(*which)
    frame = data.draw(frames(packager))
    generic = outcome(packager.unpackGeneric, frame)
    assert outcome(packager.unpack, frame) == generic
    try:
        compiled = ("ok", strict(packager)[1](frame))
    except Missed:
        compiled = None
    if generic[0] == "ok":
        assert compiled in (generic, None)
    else:
        assert compiled is None


def test_every_truncation_fails_alike(packager):
    message = {
        "t": "0200",
        "2": "4761739001010119",
        "3": "000000",
        "11": "000001",
        "41": "TERM0001",
        "70": "301",
    }
    message = {k: v for k, v in message.items() if k == "t" or k in packager.spec}
    data = packager.pack(message)
    _, unpack = strict(packager)
    for end in range(len(data)):
        generic = outcome(packager.unpackGeneric, data[:end])
        assert generic[0] == "error"
        assert outcome(packager.unpack, data[:end]) == generic
        with pytest.raises(Missed):
            unpack(data[:end])


FIRST_64 = {k: v for k, v in default_ascii.items() if not k.isdigit() or int(k) <= 64}
MESSAGE = {"t": "0200", "2": "4761739001010119", "3": "000000", "11": "000001", "41": "TERM0001"}


@pytest.mark.parametrize(
    "spec,message",
    [
        (default_ascii, dict(MESSAGE, **{"70": "301"})),
        (default, dict(MESSAGE, **{"70": "301"})),
        # with no field above 64 the secondary bitmap's block is still
        # generated with a body, so the source compiles
        (FIRST_64, MESSAGE),
    ],
    ids=["default_ascii", "default", "no field above 64"],
)
def test_pyiso8583_default_specs_are_compiled(spec, message):
    packager = SpecPackager("user", spec)
    assert packager.notCompiled is None
    pack, unpack = strict(packager)
    data = pack(message)
    assert data == bytes(iso8583.encode(dict(message), spec)[0])
    assert unpack(data) == iso8583.decode(data, spec)[0]


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 5}}, "header"),
        ({"2": {"data_enc": "utf-8", "len_enc": "ascii", "len_type": 2, "max_len": 19}}, "utf-8"),
        (
            {
                "2": {
                    "data_enc": "ascii",
                    "len_enc": "ascii",
                    "len_type": 2,
                    "max_len": 19,
                    "len_count": "nibbles",
                }
            },
            "nibbles",
        ),
        ({"129": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 1}}, "2-128"),
    ],
)
def test_spec_with_exotic_options_uses_the_generic_path(change, reason):
    spec = dict(default_ascii)
    spec.update(change)
    packager = SpecPackager("exotic", spec)
    assert reason in packager.notCompiled
    assert packager.pack == packager.packGeneric
    assert packager.unpack == packager.unpackGeneric


def test_ebcdic_spec_is_compiled_through_a_translation():
    spec = {key: dict(value) for key, value in default_ascii.items()}
    for key in ("t", "p", "1", "41", "42"):
        spec[key]["data_enc"] = "cp500"
    spec["32"]["len_enc"] = "cp500"
    packager = SpecPackager("ebcdic", spec)
    assert packager.notCompiled is None
    message = {
        "t": "0800",
        "32": "12345",
        "41": "TERM0001",
        "42": "MERCHANT000001\u00e9",
        "70": "301",
    }
    pack, unpack = strict(packager)
    data = pack(message)
    assert data == packager.packGeneric(message)
    assert data[:4] == "0800".encode("cp500")
    assert unpack(data) == packager.unpackGeneric(data)


def test_a_bit_for_an_undefined_field_names_it_and_its_bitmap():
    packager = packagerFor(*PACKAGERS[2])  # field 6 is not defined
    data = bytearray(packager.pack({"t": "0200", "3": "000000"}))
    data[4] |= 0x04  # field 6, primary bitmap at byte 4
    for unpack in (packager.unpack, packager.unpackGeneric):
        with pytest.raises(UnpackError) as info:
            unpack(bytes(data))
        assert (info.value.field, info.value.position) == ("6", 4)


def test_unpack_of_a_non_bytes_object_is_an_unpackerror(packager):
    data = packager.pack({"t": "0800", "11": "000001"})
    with pytest.raises(UnpackError, match="must be bytes"):
        packager.unpack(memoryview(data))


def test_keys_that_are_not_packed_are_ignored_by_both_paths(packager):
    message = {
        "t": "0800",
        "11": "000001",
        "h": "6000120034",
        "p": "x",
        "1": "y",
        "65": b"z",
        "mti": 800,
    }
    pack, _ = strict(packager)
    expected = packager.pack({"t": "0800", "11": "000001"})
    assert pack(message) == packager.packGeneric(message) == expected


def test_a_str_subclass_value_packs_the_same(packager):
    class Text(str):
        pass

    message = {"t": Text("0800"), "11": Text("000001")}
    assert packager.pack(message) == packager.packGeneric({"t": "0800", "11": "000001"})


@pytest.mark.reliability
@settings(max_examples=5000, deadline=None)
@given(data=st.data())
def test_soak_fuzz_compiled_against_generic(data):
    packager = packagerFor(*data.draw(st.sampled_from(PACKAGERS)))
    frame = data.draw(frames(packager))
    assert outcome(packager.unpack, frame) == outcome(packager.unpackGeneric, frame)
    message = data.draw(nearMessages(packager))
    assert outcome(packager.pack, message) == outcome(packager.packGeneric, message)

#!/usr/bin/env python3
"""Regenerates the seed corpora under fuzz/corpus/<target>/ (Python 3 standard library only).

Every input starts with one selector byte, then the body:

- line_protocol, protobuf, json: the category is ``Category::ALL[byte % 14]``
  (0 = metric, 3 = object, 5 = custom_object, 6 = logging, 7 = tracing, ...);
- decode: the encoding is ``byte % 4`` (0 identity, 1 gzip, 2 deflate/zlib, 3 zstd);
- spool_record: no selector; the input is a spool segment file (docs/spool.md);
- proxy_header: no selector; the input is what a load balancer sends first (PROXY v1 or v2);
- guance: three selector bytes (Content-Type, Content-Encoding, precision; see the GUANCE
  section), then the body.

Usage: ``python3 fuzz/make_corpus.py`` (from anywhere). Existing seeds are rewritten in place;
seeds this script no longer produces are removed. Output is deterministic (gzip MTIME is 0).
"""

import gzip
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
MAX_SEED = 4096

METRIC = b"\x00"
OBJECT = b"\x03"
CUSTOM_OBJECT = b"\x05"
LOGGING = b"\x06"
TRACING = b"\x07"

IDENTITY = b"\x00"
GZIP = b"\x01"
DEFLATE = b"\x02"
ZSTD = b"\x03"

# --------------------------------------------------------------------------------------------
# Line protocol
# --------------------------------------------------------------------------------------------

LP = {
    # valid
    "basic_metric.lp": METRIC
    + b"cpu,host=web-1,region=eu usage_user=0.5,usage_idle=99.1 1700000000000000000\n"
    b"mem,host=web-1 used=1024i,free=3072u\n",
    "escapes.lp": METRIC
    + b"my\\ measure\\,ment,tag\\ key=tag\\,val\\=ue,path=C:\\\\dir field\\ key=1i,"
    b"k\\=eq=2i,odd\\x=3i 1\n",
    "quoted_strings.lp": LOGGING
    + b'nginx,host=a message="he said \\"hi\\" and left\\\\",status="info",'
    b'multi="line one\nline two\r\nline three" 1700000000000000000\n',
    "int_uint_bounds.lp": METRIC
    + b"m min=-9223372036854775808i,max=9223372036854775807i,umax=18446744073709551615u,"
    b"zero=0i,uzero=0u\n",
    "float_exponents.lp": METRIC
    + b"m a=1e10,b=-1.5E-3,c=6.02e+23,d=0.0,e=-0,f=1.7976931348623157e308,g=5e-324,h=42\n",
    "every_boolean.lp": TRACING
    + b"m a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE\n",
    "timestamps.lp": METRIC
    + b"m f=1i 0\nm f=2i -1\nm f=3i 9223372036854775807\nm f=4i 1700000000000000000   \n",
    "crlf_line_ends.lp": METRIC
    + b"cpu,host=a usage=1i 1\r\ncpu,host=b usage=2i 2\r\n\r\ncpu,host=c usage=3i\r\n",
    "comments_and_blank_lines.lp": METRIC
    + b"# a comment line\n\n   \n#another,one=1 x=2\ncpu v=1i\n\n# trailing comment",
    "binary_base64.lp": LOGGING
    + b'log payload="aGk="b,empty=""b,long="SGVsbG8sIFdvcmxkIQ=="b,status="ok"\n',
    "arrays.lp": LOGGING
    + b'log ints=[1i,2i,-3i],uints=[1u,2u],floats=[1.5,2e3],bools=[true,F],'
    b'strs=["a","b","c\\"d"],bins=["aGk="b],status="ok"\n',
    "object_with_name.lp": OBJECT
    + b'host_object,name=web-1,os=linux cpu_total=8i,message="{\\"k\\":1}"\n',
    "custom_object_missing_name.lp": CUSTOM_OBJECT + b'thing,kind=x count=1i\n',
    # invalid
    "int_overflow.lp": METRIC + b"m i=9223372036854775808i\n",
    "uint_overflow.lp": METRIC + b"m u=18446744073709551616u\n",
    "timestamp_overflow.lp": METRIC + b"m f=1i 9223372036854775808\n",
    "unterminated_string.lp": LOGGING + b'log message="never closed\nm f=1i\n',
    "trailing_backslash.lp": METRIC + b"m,tag=value\\\n f=1i\n",
    "bad_base64.lp": LOGGING + b'log d="a!b="b,status="x"\n',
    "mixed_array.lp": LOGGING + b'log a=[1i,"a"],status="x"\n',
    "metric_string_field.lp": METRIC + b'cpu host="web-1"\n',
    "reserved_and_duplicate_keys.lp": LOGGING
    + b'log,source=x status="a",status="b",date=1i\n',
    "bad_chars_and_trailing.lp": METRIC
    + b"m\tx f=1i\nm f=1i 1 junk\nm f=1i\r\rm f=\nm ,=1i\nm\n=\n",
    "invalid_utf8.lp": LOGGING + b'log message="\xff\xfe\xc3",status="x"\n',
}

# --------------------------------------------------------------------------------------------
# Protobuf (PBPoints, schema in protocol/src/pb.rs)
# --------------------------------------------------------------------------------------------

VARINT, I64, LEN, SGROUP, I32 = 0, 1, 2, 3, 5


def varint(n):
    n &= (1 << 64) - 1  # int64 negatives are ten bytes, as protobuf encodes them
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def v(field, n):
    return key(field, VARINT) + varint(n)


def ln(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(field, LEN) + varint(len(payload)) + payload


def f64(field, x):
    return key(field, I64) + struct.pack("<d", x)


# Field { key=1; i=2; u=3; f=4; b=5; d=6; a=7; is_tag=8; type=9; unit=10; s=11; desc=12 }
def tag(k, val):
    return ln(1, k) + ln(11, val) + v(8, 1)


def fi(k, n):
    return ln(1, k) + v(2, n)


def fu(k, n):
    return ln(1, k) + v(3, n)


def ff(k, x):
    return ln(1, k) + f64(4, x)


def fb(k, b):
    return ln(1, k) + v(5, 1 if b else 0)


def fd(k, data):
    return ln(1, k) + ln(6, data)


def fs(k, s):
    return ln(1, k) + ln(11, s)


def fany(k, type_url, value):
    return ln(1, k) + ln(7, ln(1, type_url) + ln(2, value))


ARRAY_URL = "type.googleapis.com/point.Array"
MAP_URL = "type.googleapis.com/point.Map"


# BasicTypes { i=1; u=2; f=3; b=4; d=5; s=6 }
def bt_i(n):
    return v(1, n)


def bt_f(x):
    return f64(3, x)


def bt_s(s):
    return ln(6, s)


def pb_array(*elems):
    return b"".join(ln(1, e) for e in elems)


def pb_map(**entries):
    return b"".join(ln(1, ln(1, k) + ln(2, e)) for k, e in entries.items())


# PBPoint { name=1; fields=2; time=3; warns=4; debugs=5 }
def point(name, fields, time=None, extra=b""):
    body = ln(1, name) + b"".join(ln(2, f) for f in fields)
    if time is not None:
        body += v(3, time)
    return body + extra


def points(*pts):
    return b"".join(ln(1, p) for p in pts)


METRIC_POINT = point(
    "cpu",
    [tag("host", "web-1"), ff("usage", 0.5), fi("delta", -3), fu("count", 7), fb("up", True)],
    1700000000000000000,
)

PB = {
    "valid_metric.pb.bin": METRIC + points(METRIC_POINT),
    "valid_logging.pb.bin": LOGGING
    + points(
        point(
            "nginx",
            [
                tag("host", "a"),
                fs("message", "GET / 200 \u00e9\u6f22"),
                fs("status", "info"),
                fd("raw", b"\x00\x01\xff"),
                ln(1, "bytes") + v(2, 512) + v(9, 1) + ln(10, "B") + ln(12, "response size"),
            ],
            1700000000000000000,
        )
    ),
    "any_array.pb.bin": LOGGING
    + points(
        point(
            "log",
            [
                fs("status", "ok"),
                fany("ints", ARRAY_URL, pb_array(bt_i(1), bt_i(2), bt_i(-3))),
                fany("strs", ARRAY_URL, pb_array(bt_s("a"), bt_s("b"))),
                fany("empty", ARRAY_URL, b""),
            ],
        )
    ),
    "any_map.pb.bin": LOGGING
    + points(point("log", [fs("status", "ok"), fany("m", MAP_URL, pb_map(a=bt_i(1), b=bt_f(2.5)))])),
    "any_bad_type_url.pb.bin": LOGGING
    + points(point("log", [fany("x", "type.googleapis.com/google.protobuf.Struct", b"")])),
    "any_array_malformed.pb.bin": LOGGING
    + points(point("log", [fany("x", ARRAY_URL, ln(1, b"\x0a\x05ab"))])),
    "many_points_warns_debugs.pb.bin": OBJECT
    + points(
        point("host", [fs("name", "h1"), fi("cpus", 8)], 1, ln(4, ln(1, "w") + ln(2, "m")) + ln(5, ln(1, "dbg"))),
        point("host", [fs("name", "h2"), fi("cpus", 4)], 2),
        point("host", [fi("cpus", 2)], 3),
    ),
    "oneof_last_wins.pb.bin": METRIC + points(point("m", [fi("f", 1) + ln(11, "s") + v(2, 5)])),
    "empty_batch.pb.bin": METRIC,
    "truncated.pb.bin": METRIC + points(METRIC_POINT)[:-7],
    "length_overflow.pb.bin": METRIC + key(1, LEN) + varint(0xFFFFFFFFFFFF) + b"abc",
    "bad_varint.pb.bin": METRIC + ln(1, ln(1, "m") + key(3, VARINT) + b"\xff" * 10 + b"\x01"),
    "unknown_field.pb.bin": METRIC + points(point("m", [fi("f", 1)], extra=ln(15, "?"))),
    "wrong_wire_type.pb.bin": METRIC + points(v(1, 5) + ln(2, fi("f", 1))),
    "group_wire_type.pb.bin": METRIC + points(point("m", [fi("f", 1)]) + key(6, SGROUP) + key(6, 4)),
    "i32_wire_type.pb.bin": METRIC + points(point("m", [ln(1, "f") + key(4, I32) + b"\x00\x00\x80\x3f"])),
    "tag_not_string.pb.bin": METRIC + points(point("m", [ln(1, "t") + v(2, 1) + v(8, 1), fi("f", 1)])),
    "missing_value.pb.bin": METRIC + points(point("m", [ln(1, "f")]), point("", [fi("f", 1)])),
    "invalid_utf8.pb.bin": LOGGING + points(point("m\xff".encode("latin-1"), [fs("status", "x")])),
    "metric_string_field.pb.bin": METRIC + points(point("cpu", [fs("host", "web-1")])),
}

# --------------------------------------------------------------------------------------------
# JSON (shape in protocol/src/json.rs)
# --------------------------------------------------------------------------------------------

JSON = {
    "valid_metric.json": METRIC
    + b'[{"measurement":"cpu","tags":{"host":"web-1"},'
    b'"fields":{"usage":0.5,"count":3,"big":-9223372036854775808,"e":1.5e-3},'
    b'"time":1700000000000000000}]',
    "valid_logging.json": LOGGING
    + b'[ {"measurement": "nginx", "fields": {"message": "he said \\"hi\\"\\n\\t\\u00e9 \\ud83d\\ude00",'
    b' "status": "info", "ok": true, "bad": false}},\n'
    b'  {"measurement": "nginx", "tags": {}, "fields": {"status": "warn"}, "time": 0} ]',
    "arrays.json": LOGGING
    + b'[{"measurement":"m","fields":{"status":"x","a":[1,2,3],"s":["a","b"],"e":[]}}]',
    "object_with_name.json": OBJECT
    + b'[{"measurement":"host","tags":{"name":"h1"},"fields":{"cpus":8}}]',
    "empty_array.json": METRIC + b" [ ] ",
    "trailing_comma.json": METRIC + b'[{"measurement":"m","fields":{"f":1,}},]',
    "comment.json": METRIC + b'// hi\n[{"measurement":"m","fields":{"f":1}}]',
    "null_value.json": METRIC + b'[{"measurement":"m","fields":{"f":null}}]',
    "nested_object.json": METRIC + b'[{"measurement":"m","fields":{"f":{"g":1}}}]',
    "nested_array.json": METRIC + b'[{"measurement":"m","fields":{"f":[[1]]}}]',
    "mixed_array.json": LOGGING + b'[{"measurement":"m","fields":{"status":"x","f":[1,"a"]}}]',
    "duplicate_and_unknown_keys.json": METRIC
    + b'[{"measurement":"m","measurement":"n","fields":{"f":1},"extra":1}]',
    "lone_surrogate.json": LOGGING + b'[{"measurement":"m","fields":{"status":"\\ud800x"}}]',
    "control_char.json": LOGGING + b'[{"measurement":"m","fields":{"status":"a\x01b"}}]',
    "missing_fields.json": METRIC + b'[{"measurement":"m","tags":{"t":"v"}}]',
    "not_an_array.json": METRIC + b'{"measurement":"m","fields":{"f":1}}',
    "time_overflow.json": METRIC + b'[{"measurement":"m","fields":{"f":1},"time":92233720368547758070}]',
    "bad_numbers.json": METRIC
    + b'[{"measurement":"m","fields":{"a":01,"b":1.,"c":.5,"d":-,"e":1e,"f":+1,"g":NaN}}]',
    "tag_not_string.json": METRIC + b'[{"measurement":"m","tags":{"t":1},"fields":{"f":1}}]',
    "deep_nesting.json": METRIC + b"[" * 200 + b"]" * 200,
    "truncated.json": METRIC + b'[{"measurement":"m","fields":{"f":"abc',
    "bom_and_invalid_utf8.json": METRIC + b'\xef\xbb\xbf[{"measurement":"\xff","fields":{"f":1}}]',
}

# --------------------------------------------------------------------------------------------
# Decode
# --------------------------------------------------------------------------------------------

PAYLOAD = (
    b"cpu,host=web-1 usage=0.5,n=3i 1700000000000000000\n"
    b"mem,host=web-1 free=1024u 1700000000000000000\n"
)


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def zl(data):
    return zlib.compress(data, 9)


def raw_deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def gzip_all_header_fields(data):
    extra = b"AB\x04\x00data"
    header = (
        b"\x1f\x8b\x08\x1e"  # FHCRC | FEXTRA | FNAME | FCOMMENT
        + b"\x00\x00\x00\x00\x02\x03"
        + struct.pack("<H", len(extra))
        + extra
        + b"name.lp\x00"
        + b"a comment\x00"
    )
    header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    trailer = struct.pack("<II", zlib.crc32(data), len(data))
    return header + raw_deflate(data) + trailer


# A zstd frame of PAYLOAD made with the `zstd` CLI (v1.5.4, level 3, with checksum).
ZSTD_FRAME = bytes.fromhex(
    "28b52ffd2460dd0100f4026370752c686f73743d7765622d312075736167653d302e352c"
    "6e3d3369203137300a6d656d667265653d31303234750300517da82a8e04014fdab39ef1"
)


def zstd_raw_frame(data, window_descriptor=0x58):
    """A frame with a window descriptor and one raw (stored) last block."""
    header = b"\x28\xb5\x2f\xfd" + b"\x00" + bytes([window_descriptor])
    block = struct.pack("<I", (len(data) << 3) | 1)[:3]  # last block, type raw
    return header + block + data


def zstd_rle_bomb(blocks=16):
    """A 128 KiB window and `blocks` RLE blocks of 128 KiB each: 2 MiB from ~70 bytes."""
    out = b"\x28\xb5\x2f\xfd\x00\x38"
    for i in range(blocks):
        last = 1 if i == blocks - 1 else 0
        out += struct.pack("<I", (131072 << 3) | (1 << 1) | last)[:3] + b"a"
    return out


def zstd_skippable(data):
    return struct.pack("<II", 0x184D2A50, len(data)) + data


BOMB = b"\x00" * (2 << 20)  # 2 MiB: above the 1 MiB cap of fuzzing::decode

DECODE = {
    "identity.bin": IDENTITY + PAYLOAD,
    "identity_empty.bin": IDENTITY,
    "single_member.gz.bin": GZIP + gz(PAYLOAD),
    "empty_member.gz.bin": GZIP + gz(b""),
    "multi_member.gz.bin": GZIP + gz(PAYLOAD[:40]) + gz(PAYLOAD[40:]) + gz(b""),
    "trailing_garbage.gz.bin": GZIP + gz(PAYLOAD) + b"garbage\x00\x00",
    "trailing_zero_padding.gz.bin": GZIP + gz(PAYLOAD) + b"\x00" * 8,
    "truncated.gz.bin": GZIP + gz(PAYLOAD)[:-5],
    "truncated_header.gz.bin": GZIP + b"\x1f\x8b\x08\x1c\x00\x00\x00\x00\x00\x03\xff\xff",
    "bad_crc.gz.bin": GZIP + gz(PAYLOAD)[:-8] + b"\xde\xad\xbe\xef" + gz(PAYLOAD)[-4:],
    "all_header_fields.gz.bin": GZIP + gzip_all_header_fields(PAYLOAD),
    "bomb_2mib.gz.bin": GZIP + gz(BOMB),
    "stream.zlib.bin": DEFLATE + zl(PAYLOAD),
    "truncated.zlib.bin": DEFLATE + zl(PAYLOAD)[:-3],
    "trailing_garbage.zlib.bin": DEFLATE + zl(PAYLOAD) + b"xyz",
    "raw_deflate_no_header.zlib.bin": DEFLATE + raw_deflate(PAYLOAD),
    "preset_dictionary.zlib.bin": DEFLATE + b"\x78\xbb\x00\x00\x00\x01" + raw_deflate(PAYLOAD),
    "bomb_2mib.zlib.bin": DEFLATE + zl(BOMB),
    "frame.zst.bin": ZSTD + ZSTD_FRAME,
    "two_frames_and_skippable.zst.bin": ZSTD + ZSTD_FRAME + zstd_skippable(b"skip me") + zstd_raw_frame(b"m f=1i\n"),
    "truncated.zst.bin": ZSTD + ZSTD_FRAME[:-6],
    "huge_window.zst.bin": ZSTD + zstd_raw_frame(b"hello", window_descriptor=0xA8),
    "rle_bomb_2mib.zst.bin": ZSTD + zstd_rle_bomb(),
    "trailing_garbage.zst.bin": ZSTD + ZSTD_FRAME + b"junk",
    "not_a_frame.zst.bin": ZSTD + b"\x28\xb5\x2f\xfe\x00\x00",
}


# --------------------------------------------------------------------------------------------
# Spool segments (no selector byte: the whole input is a segment file)
# --------------------------------------------------------------------------------------------


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def spool_payload(path=b"/v1/write/metric?token=tkn_x0000000000000000000000000000000", headers=((b"x-points", b"1"),), body=b"m f=1i 1\n"):
    out = struct.pack("<Q", 1700000000000) + struct.pack("<H", len(path)) + path
    out += struct.pack("<H", len(headers))
    for name, value in headers:
        out += struct.pack("<H", len(name)) + name + struct.pack("<H", len(value)) + value
    return out + body


def spool_frame(seq, payload):
    head = struct.pack("<I", len(payload))
    crc = crc32c(head + struct.pack("<Q", seq) + payload)
    return head + struct.pack("<I", crc) + struct.pack("<Q", seq) + payload


def spool_segment(first, payloads):
    out = b"OWSPOOL1" + struct.pack("<Q", first)
    for i, p in enumerate(payloads):
        out += spool_frame(first + i, p)
    return out


THREE = spool_segment(1, [spool_payload(body=b"m f=%di 1\n" % i) for i in range(3)])
FIRST_END = 16 + len(spool_frame(1, spool_payload(body=b"m f=0i 1\n")))


def flip(data, at):
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


SPOOL = {
    "three_records.seg": THREE,
    "header_only.seg": spool_segment(42, []),
    "torn_tail.seg": THREE[:-5],
    "torn_header.seg": THREE[:10],
    "flipped_bit_middle.seg": flip(THREE, FIRST_END + 20),
    "foreign_header.seg": b"NOTSPOOL" + THREE[8:],
    "out_of_sequence.seg": spool_segment(1, [spool_payload()]) + spool_frame(9, spool_payload()),
    "huge_length.seg": THREE[:FIRST_END] + b"\xff\xff\xff\x7f" + THREE[FIRST_END + 4:],
    "bad_payload_good_crc.seg": spool_segment(5, [b"\x00" * 8 + b"\xff\xff" + b"short"]),
    "zero_fill_after_records.seg": THREE + b"\x00" * 64,
    "many_headers.seg": spool_segment(7, [spool_payload(headers=tuple((b"h%d" % i, b"v" * i) for i in range(20)))]),
    "empty_body.seg": spool_segment(3, [spool_payload(body=b"")]),
}


# --------------------------------------------------------------------------------------------
# PROXY protocol headers (no selector byte)
# --------------------------------------------------------------------------------------------

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command, family, block, tlvs=b""):
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack(">H", len(block) + len(tlvs)) + block + tlvs


IPV4_BLOCK = bytes([203, 0, 113, 7, 10, 0, 0, 1]) + struct.pack(">HH", 51234, 443)
IPV6_BLOCK = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack(">HH", 4000, 443)
AWS_TLV = b"\xea" + struct.pack(">H", 23) + b"\x01" + b"vpce-0123456789abcdef0"
ALI_TLV = b"\xe1" + struct.pack(">H", 12) + b"vpc-abcdefgh"
CLIENT_HELLO = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03"

PROXY = {
    "v1_tcp4.txt": b"PROXY TCP4 198.51.100.22 10.0.0.1 35646 443\r\n" + CLIENT_HELLO,
    "v1_tcp6.txt": b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n",
    "v1_unknown.txt": b"PROXY UNKNOWN\r\n",
    "v1_truncated.txt": b"PROXY TCP4 198.51.100.22 10.0",
    "v1_too_long.txt": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    "v1_bad_address.txt": b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n",
    "v1_doubled.txt": b"PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n",
    "v1_non_ascii_cr.txt": b"PROXY PROXY \xc5\xaf\r\xc5\xaf\r%P%\r\nI",
    "v2_local.bin": v2(0, 0x00, b""),
    "v2_ipv4_aws_tlv.bin": v2(1, 0x11, IPV4_BLOCK, AWS_TLV) + CLIENT_HELLO,
    "v2_ipv4_alibaba_tlv.bin": v2(1, 0x11, IPV4_BLOCK, ALI_TLV),
    "v2_ipv6.bin": v2(1, 0x21, IPV6_BLOCK),
    "v2_udp.bin": v2(1, 0x12, IPV4_BLOCK),
    "v2_oversized_length.bin": V2_SIG + b"\x21\x11\xff\xff",
    "v2_bad_tlv.bin": v2(1, 0x11, IPV4_BLOCK, b"\xea\x00\x40\x01"),
    "v2_version_3.bin": V2_SIG + b"\x31\x11\x00\x0c" + IPV4_BLOCK,
    "tls_without_header.bin": CLIENT_HELLO,
}


# --------------------------------------------------------------------------------------------
# Guance equivalence (oracle/tests/equivalence.rs, fuzz target guance): three selector bytes,
# then the body: Content-Type, Content-Encoding and precision, each an index into the tables
# of oracle/src/lib.rs (CONTENT_TYPES, CONTENT_ENCODINGS, PRECISIONS). Each seed is a case the
# issue "valid means what Guance decodes" found read two ways, or a shape real DataKit sends:
# oneway must refuse it or read it as Guance does.
# --------------------------------------------------------------------------------------------

CT_LP, CT_PB, CT_JSON, CT_PBJSON, CT_NONE, CT_XPB, CT_PB_BARE, CT_PB_NOSPACE = range(8)
CT_PB_CASE, CT_JSON_CHARSET, CT_TEXT = 8, 9, 10
CE_NONE, CE_GZIP, CE_DEFLATE, CE_ZSTD = 0, 1, 2, 3
P_NONE, P_N, P_U, P_MS, P_S = 0, 1, 2, 3, 4


def case(ct, body, ce=CE_NONE, precision=P_NONE):
    return bytes([ct, ce, precision]) + body


def gzip_with(flags, extra, data):
    deflated = gz(data)
    member = bytearray(deflated[:10])
    member[3] = flags
    return bytes(member) + extra + deflated[10:]


def fhcrc(data, good):
    member = bytearray(gz(data)[:10])
    member[3] = 0x02
    crc = zlib.crc32(bytes(member)) & 0xFFFF if good else 0
    return bytes(member) + struct.pack("<H", crc) + gz(data)[10:]


# A PBPoints body that is also line protocol: `\n#` is a comment, then a point whose name
# holds a line of its own.
POLYGLOT = points(point(" evil,host=x pwned=1i 1700000000000000000\n#", [fi("f", 1)]))
LP_OK = b"cpu,host=a usage=1i 1700000000000000000\n"

GUANCE = {
    # Content-Type spellings Guance reads as line protocol.
    "polyglot_x_protobuf.bin": case(CT_XPB, POLYGLOT),
    "polyglot_bare_protobuf.bin": case(CT_PB_BARE, POLYGLOT),
    "polyglot_protobuf_nospace.bin": case(CT_PB_NOSPACE, POLYGLOT),
    "polyglot_exact_protobuf.bin": case(CT_PB, POLYGLOT),
    "json_with_charset.bin": case(CT_JSON_CHARSET, b'[{"measurement":"m","fields":{"a":1}}]'),
    "pbjson.bin": case(CT_PBJSON, b'[{"name":"m","fields":[{"key":"a","i":"1"}]}]'),
    # Bytes no decoder reads.
    "gzip_fextra.bin": case(CT_LP, gzip_with(0x04, b"\x04\x00abcd", LP_OK), CE_GZIP),
    "gzip_fname.bin": case(CT_LP, gzip_with(0x08, b"batch.lp\x00", LP_OK), CE_GZIP),
    "gzip_fcomment.bin": case(CT_LP, gzip_with(0x10, b"hidden\x00", LP_OK), CE_GZIP),
    "gzip_fhcrc_wrong.bin": case(CT_LP, fhcrc(LP_OK, False), CE_GZIP),
    "gzip_fhcrc_right.bin": case(CT_LP, fhcrc(LP_OK, True), CE_GZIP),
    "zstd_skippable.bin": case(CT_LP, zstd_skippable(LP_OK), CE_ZSTD),
    # Line protocol Guance refuses or reads differently.
    "lp_crlf.bin": case(CT_LP, b"cpu usage=1i 1\r\ncpu usage=2i 2\r\n"),
    "lp_timestamp_max.bin": case(CT_LP, b"cpu usage=1i 9223372036854775807\n"),
    "lp_float_1e400.bin": case(CT_LP, b"cpu usage=1e400\n"),
    "json_float_1e400.bin": case(CT_JSON, b'[{"measurement":"m","fields":{"a":1e400}}]'),
    "lp_equals_in_tag_value.bin": case(CT_LP, b"cpu,t=a=b usage=1i\n"),
    "lp_brackets_in_keys.bin": case(CT_LP, b"cpu a]=1i\ncpu b[[c=1i\n"),
    "lp_control_characters.bin": case(CT_LP, b"c\x01pu,k\x02=v\x03 f\x04=1i\n"),
    "lp_empty_body.bin": case(CT_LP, b""),
    "lp_comment_swallows_points.bin": case(CT_LP, b'# a k="x\ncpu f=1i\ncpu g="y"\n'),
    "lp_comment_splits_a_point.bin": case(CT_LP, b"# x [[cpu f=1i\n"),
    "lp_array_trailing_comma_panics_guance.bin": case(CT_LP, b"m f=[1i,]\n"),
    "lp_escaped_backslash_before_space.bin": case(CT_LP, b"m,t=a\\\\ b f=1i\n"),
    "lp_negative_timestamp.bin": case(CT_LP, b"m f=1i -5\n"),
    "lp_no_timestamp_with_precision.bin": case(CT_LP, b"m f=1i\n", precision=P_S),
    "pb_precision_seconds.bin": case(CT_PB, points(point("m", [fi("a", 1)], 5)), precision=P_S),
    # What real DataKit sends, which must pass.
    "datakit_nil_field.bin": case(CT_PB, points(point("app", [fs("message", "m"), ln(1, "extra")], 1))),
    "datakit_tags_only.bin": case(CT_PB, points(point("only_string", [tag("host", "h")], 1))),
    "datakit_metric_string.bin": case(CT_PB, points(point("custom", [ff("usage", 1.5), fs("version", "1.2.3")], 1))),
    "datakit_lp_empty_array.bin": case(CT_LP, b'arrays,host=h arr_b=[true,false],arr_empty_s=[],message="x" 1\n'),
    "datakit_duplicate_keys.bin": case(CT_PB, points(point("m", [fi("a", 1), fi("b", 2), fi("a", 3)], 1))),
    "datakit_inf_nan.bin": case(CT_PB, points(point("t", [ff("p", float("inf")), ff("n", float("-inf")), ff("x", float("nan"))], 1))),
}


def write(target, seeds, most=25):
    if not 10 <= len(seeds) <= most:
        sys.exit(f"{target}: {len(seeds)} seeds, want 10 to {most}")
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        # `found_*`: inputs a test or a fuzz run found read two ways, kept as they were found.
        if name not in seeds and not name.startswith("found_"):
            os.remove(os.path.join(directory, name))
    for name, data in sorted(seeds.items()):
        if len(data) >= MAX_SEED:
            sys.exit(f"{target}/{name}: {len(data)} bytes, want < {MAX_SEED}")
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds")


def main():
    write("line_protocol", LP)
    write("protobuf", PB)
    write("json", JSON)
    write("decode", DECODE)
    write("spool_record", SPOOL)
    write("proxy_header", PROXY)
    # Every case the equivalence test ever found read two ways is kept: no upper bound to speak of.
    write("guance", GUANCE, most=1000)


if __name__ == "__main__":
    main()

"""Content ids: Merkle tree, manifests, proofs, CID text (oasis.core.content, oasis.core.filelink)."""

from __future__ import annotations

import random

import msgspec
import pytest

from oasis.core import content
from oasis.core.content import BLOCK_SIZE, ContentError, Manifest
from oasis.core.filelink import FileLink, parse
from oasis.core.streamlink import LinkError

DATA = random.Random(1).randbytes(5 * BLOCK_SIZE + 1234)


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE,
                                  len(DATA)])
def test_every_block_verifies_alone(size: int) -> None:
    data = DATA[:size]
    m, tree = content.build_bytes(data, name="clip.mp4", mime="video/mp4")
    assert m.blocks == content.blocks_of(size) and m.size == size
    for i in range(m.blocks):
        block = data[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE]
        assert len(tree.proof(i)) == m.depth
        assert content.verify_block(m, i, block, tree.proof(i))
    assert content.decode_manifest(m.encode(), m.cid()) == m


def test_forged_block_bad_proof_wrong_index_are_refused() -> None:
    m, tree = content.build_bytes(DATA)
    block = DATA[2 * BLOCK_SIZE:3 * BLOCK_SIZE]
    forged = bytearray(block)
    forged[100] ^= 1
    assert not content.verify_block(m, 2, bytes(forged), tree.proof(2))
    bad = list(tree.proof(2))
    bad[1] = bytes(32)
    assert not content.verify_block(m, 2, block, bad)
    assert not content.verify_block(m, 3, block, tree.proof(2))  # index is bound into the leaf
    assert not content.verify_block(m, 2, block, tree.proof(2)[:-1])  # short proof
    assert not content.verify_block(m, 2, block + b"x", tree.proof(2))
    assert not content.verify_block(m, 99, block, tree.proof(2))
    assert not content.verify_block(m, -1, block, tree.proof(2))
    # an inner node offered as a "block" (second-preimage across levels) fails: leaves are domain-separated
    inner = tree.levels[1][0]
    assert not content.verify_block(m, 0, inner, tree.proof(0))


def test_manifest_must_hash_to_the_cid_and_respect_caps() -> None:
    m, _ = content.build_bytes(DATA, name="a.ts", mime="video/mp2t")
    with pytest.raises(ContentError) as e:
        content.decode_manifest(m.encode(), bytes(32))
    assert e.value.code == "wrong_cid"
    big = b"\x96" + b"x" * (content.MAX_MANIFEST + 1)
    with pytest.raises(ContentError) as e:
        content.decode_manifest(big, content.hashlib.sha256(content._CID + big).digest())
    assert e.value.code == "too_large"
    # a manifest claiming a file over MAX_FILE (or another block size) is refused even if it hashes right
    for fields in ([1, "x", content.MAX_FILE + 1, BLOCK_SIZE, "video/mp4", bytes(32)],
                   [1, "x", 10, 4096, "video/mp4", bytes(32)],
                   [2, "x", 10, BLOCK_SIZE, "video/mp4", bytes(32)],
                   [1, "x", 10, BLOCK_SIZE, "video/mp4", bytes(32), "extra"]):
        raw = msgspec.msgpack.encode(fields)
        with pytest.raises(ContentError):
            content.decode_manifest(raw, content.hashlib.sha256(content._CID + raw).digest())


def test_manifest_decode_byte_at_a_time_and_fuzz_never_escapes() -> None:
    m, _ = content.build_bytes(DATA, name="clip.mp4", mime="video/mp4")
    raw = m.encode()
    for n in range(len(raw)):
        part = raw[:n]
        with pytest.raises(ContentError):
            content.decode_manifest(part, content.hashlib.sha256(content._CID + part).digest())
    rng = random.Random(7)
    for _ in range(2000):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        body = bytes(b)
        try:
            got = content.decode_manifest(body, content.hashlib.sha256(content._CID + body).digest())
        except ContentError:
            continue
        assert isinstance(got, Manifest) and got.size <= content.MAX_FILE


def test_too_many_blocks_and_names() -> None:
    with pytest.raises(ContentError):
        content.MerkleTree([bytes(32)] * (content.MAX_BLOCKS + 1))
    with pytest.raises(ContentError):
        content.build(iter(()), content.MAX_FILE + 1, name="x", mime="video/mp4")
    assert content.safe_name("../../etc/passwd") == "passwd"
    assert content.safe_name("a\nb\x00.mp4") == "a_b_.mp4"
    assert content.safe_name("..") == ""
    m, _ = content.build_bytes(b"x", name="n", mime="text/html")  # not a known type: octet-stream
    assert m.mime == "application/octet-stream"


def test_cid_text_is_strict() -> None:
    m, _ = content.build_bytes(DATA)
    text = content.cid_text(m.cid())
    assert text.startswith("of1") and len(text) == 55
    assert content.parse_cid(text) == m.cid()
    for bad in ("", text.upper(), text[:-1], text + "a", "of2" + text[3:], text[:-1] + "1",
                text[:-1] + "b" if text[-1] != "b" else text[:-1] + "c"):
        try:
            got = content.parse_cid(bad)
        except ContentError:
            continue
        assert content.cid_text(got) == bad  # only canonical texts parse


def test_file_link_round_trip_and_strictness() -> None:
    m, _ = content.build_bytes(DATA)
    key = bytes(range(32))
    link = FileLink(m.cid(), ((key, "127.0.0.1", 4433), (key, "::1", 9)), origin="http://127.0.0.1:8080")
    assert parse(link.to_text()) == link
    base = "oasis://file/" + content.cid_text(m.cid())
    for bad in (base + "?x=1", base + "?b=nope@1.2.3.4:5", base + "?o=ftp://x", "oasis://" + base[13:],
                base[:-1], base + "?b=" + "&b=".join([f"{'a' * 52}@1.2.3.4:5"] * 9),
                base + "?b=" + "a" * 52 + "@example.com:5"):
        with pytest.raises(LinkError):
            parse(bad)
    # a peer address a node must not dial (was taken: 0.0.0.0, multicast, broadcast, zone
    # ids, unbracketed IPv6, non-ASCII digits), as for stream links (docs/oftp.md §16)
    from oasis.core.identity import peer_id_of
    pid = peer_id_of(key)
    for host_port in ("0.0.0.0:5", "224.0.0.1:5", "255.255.255.255:5", "[::]:5", "[fe80::1%25lo]:5",
                      "[fe80::1%lo]:5", "::1:5", "1.2.3.4:\uff15", "[ff02::1]:5"):
        with pytest.raises(LinkError):
            parse(base + f"?b={pid}@{host_port}")
    assert parse(base + f"?b={pid}@[2001:db8::7]:5").peers == ((key, "2001:db8::7", 5),)


def test_a_file_link_is_read_in_any_case_and_around_spaces_as_stream_links_are() -> None:
    """``OASIS://FILE/of1...`` and a link pasted with spaces or its line end were read as a
    content id ("not a content id"), where a stream link in any case works (a URI's scheme
    and host are case-insensitive, RFC 3986 §3.1, §3.2.2). The content id itself is not."""
    from oasis.core.streamlink import is_link
    from oasis.node.files import parse_target

    m, _ = content.build_bytes(DATA)
    cid = content.cid_text(m.cid())
    for text in (f"OASIS://FILE/{cid}", f"Oasis://File/{cid}", f"  oasis://file/{cid}\n",
                 f"oasis://file/{cid}?o=http://127.0.0.1:8080 "):
        assert is_link(text)
        assert parse(text).cid == m.cid()
        assert parse_target(text).cid == m.cid()
    assert parse_target(f" {cid}\n").cid == m.cid()
    with pytest.raises(LinkError):
        parse(f"OASIS://FILE/{cid.upper()}")
    with pytest.raises(LinkError, match="more than one origin") as e:
        parse(f"oasis://file/{cid}?o=http://127.0.0.1:1&o=http://127.0.0.1:2")
    assert e.value.code == "bad_origin"
    with pytest.raises(ValueError):
        parse_target(cid.upper())

"""The hostile peer (python -m oasis.tools.hostile): its loopback rule, its default mode, and
the chat, DM, file, NAT and DHT modes against real broadcaster and publisher processes. Each
waits on the victim's reactions, not on a shared time budget, so this module runs in the
parallel phase (tests/conftest.py); the every-mode timed run is test_tools_hostile.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from oasis.core.chat import ChatConfig
from oasis.core.identity import Identity
from oasis.tools import hostile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))  # the process helpers
from procs import OasisProcess  # noqa: E402

pytestmark = pytest.mark.integration


def test_refuses_anything_but_loopback():
    pid = Identity.generate().peer_id
    with pytest.raises(SystemExit, match="loopback"):
        hostile.parse_victim(f"10.0.0.1:4433:{pid}")
    with pytest.raises(SystemExit, match="loopback"):
        hostile.parse_victim(f"example.org:4433:{pid}")
    with pytest.raises(SystemExit, match="loopback"):
        hostile.loopback_url("http://192.168.1.1:8080/tracker")
    assert hostile.parse_victim(f"127.0.0.1:4433:{pid}").port == 4433
    with pytest.raises(SystemExit, match="loopback"):
        hostile.main(["--victim", f"127.0.0.1:4433:{pid}", "--source", "10.0.0.2", "--mode", "junk"])


async def test_source_is_the_address_its_datagrams_and_http_come_from():
    # --source: several tools at once, each from a loopback address of its own, are several
    # attackers to a victim that counts its limits per source address
    loop = asyncio.get_running_loop()
    udp_from: list[str] = []
    five = asyncio.Event()

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            udp_from.append(addr[0])
            if len(udp_from) == 5:
                five.set()

    tcp_from: list[str] = []

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tcp_from.append(writer.get_extra_info("peername")[0])
        writer.close()

    sink, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    token = hostile.SOURCE.set("127.0.0.7")
    try:
        ctx = hostile.Ctx(hostile.Budget(10.0, 100.0, 5), None, None, None, random.Random(1))
        victim = hostile.Victim("127.0.0.1", sink.get_extra_info("sockname")[1], bytes(32))
        out = await hostile.m_junk(ctx, victim, time.monotonic() + 10.0)
        await asyncio.wait_for(five.wait(), 10.0)
        port = server.sockets[0].getsockname()[1]
        async with hostile._http() as http:
            with contextlib.suppress(aiohttp.ClientError):
                await http.get(f"http://127.0.0.1:{port}/")
    finally:
        hostile.SOURCE.reset(token)
        sink.close()
        server.close()
        await server.wait_closed()
    assert sum(out["sent"].values()) == 5
    assert udp_from == ["127.0.0.7"] * 5
    assert tcp_from and set(tcp_from) == {"127.0.0.7"}


def test_the_default_mode_runs_what_the_options_allow(tmp_path):
    # `--victim` alone: 'all' (the default) used to stop at once ("mode tickets needs
    # --tickets URL"); it runs the modes that need nothing more and says what it skipped
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "300",
                      "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    try:
        info = b.wait_info()
        out = subprocess.run([sys.executable, "-m", "oasis.tools.hostile", "--victim",
                              f"{info['oftp']}:{info['peer_id']}", "--duration", "5", "--rate", "50",
                              "--max-sends", "200", "--seed", "1"], capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr
        rep = json.loads(out.stdout)
        assert set(rep["modes"]) == set(hostile.PER_VICTIM) - hostile.NEEDS_STREAM
        assert b"'all' skips" in out.stderr and b"tickets" in out.stderr
        assert b.popen.poll() is None
    finally:
        b.stop()


def _events(metrics_url: str) -> dict[str, float]:
    """The victim's node counters, from its Prometheus text."""
    import re
    import urllib.request
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r'^oasis_node_events_total\{event="([a-z0-9_]+)"\} (\S+)$',
                                                   text, re.M)}


def test_chat_dm_and_file_modes_against_a_broadcaster_and_a_publisher(tmp_path):
    from oasis.core.dm import DmConfig

    blob = tmp_path / "clip.ts"  # the publisher serves any file; 48 blocks of noise
    blob.write_bytes(__import__("os").urandom(48 * 32 * 1024))
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "300",
                      "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    p = OasisProcess(["publish", str(blob), "--data-dir", str(tmp_path / "p")], str(tmp_path / "p.log"))
    try:
        bi, pi = b.wait_info(), p.wait_info()
        # one run per mode, each with its own budget: 800 sends at 200/s end it in ~4 s; the
        # 20 s bound leaves a loaded machine time for the dial (CONNECT_TIMEOUT 5 s)
        base = [sys.executable, "-m", "oasis.tools.hostile", "--rate", "200", "--seed", "2",
                "--duration", "20", "--max-sends", "800"]
        reps, took = {}, {}
        for mode in ("chat", "dm"):
            t0 = time.monotonic()
            out = subprocess.run(base + ["--victim", f"{bi['oftp']}:{bi['peer_id']}", "--stream", bi["stream_id"],
                                         "--mode", mode], capture_output=True, timeout=90, check=True)
            reps[mode] = json.loads(out.stdout)
            took[mode] = time.monotonic() - t0
        out = subprocess.run(base + ["--victim", f"{pi['oftp']}:{pi['peer_id']}", "--cid", pi["cid"],
                                     "--mode", "files"], capture_output=True, timeout=90, check=True)
        files = json.loads(out.stdout)
        live = {"modes": {m: r["modes"][m] for m, r in reps.items()},
                "victims_alive_at_end": min(r["victims_alive_at_end"] for r in reps.values())}
        assert b.popen.poll() is None and p.popen.poll() is None, "a victim died"
        ev_b = _events(f"{bi['http']}/metrics")
        ev_p = _events(f"{pi['gateway']}/metrics")
    finally:
        codes = (b.stop(), p.stop())
    assert all(c in (0, -15) for c in codes)
    for rep in (live, files):
        assert rep["victims_alive_at_end"] == 1
        for mode, m in rep["modes"].items():
            (res,) = m["result"].values()
            assert "tool_error" not in res and m["victims_alive_after"] == 1, (mode, res)
    # chat: forgeries and forged moderation refused; our flood and the sybils cut at this first hop
    (chat,) = live["modes"]["chat"]["result"].values()
    assert chat["chat"] and min(chat["chat"].values()) > 20, chat
    assert ev_b["chat_received"] >= sum(chat["chat"].values()) // 2, (chat, ev_b)
    assert ev_b["chat_bad_signature"] >= 1 and ev_b["chat_rate_limited"] >= 1 and ev_b["chat_link_limited"] >= 1
    assert ev_b["chat_mods_bad"] >= 1 and ev_b.get("chat_mods_applied", 0) == 0
    # what got through is what one link's bucket lets through in the time the flood took
    # (a ratio of received would depend on how fast a loaded machine let the tool send)
    room = ChatConfig()
    assert ev_b["chat_delivered"] <= room.link_burst + room.link_rate * took["chat"], (ev_b, took)
    assert ev_b["chat_delivered"] < ev_b["chat_received"] / 2
    # dm: junk never opens, the flood is rate-limited, and what it parked stays within a cap;
    # the one genuine message, replayed again and again, is shown once
    (dm,) = live["modes"]["dm"]["result"].values()
    assert dm["dm"] and min(dm["dm"].values()) > 20, dm
    assert ev_b["dm_open_failed"] >= 1 and ev_b["dm_prekeys_bad"] >= 1 and ev_b["dm_link_limited"] >= 1
    assert ev_b["dm_delivered"] == 1 and ev_b["dm_duplicates"] >= 1, ev_b
    assert ev_b["dm_stored"] <= DmConfig().max_held
    # files: floods refused beyond the queue; the link that sent unsolicited blocks cut
    (fr,) = files["modes"]["files"]["result"].values()
    assert fr["blocks_in_file"] == 48, fr
    assert ev_p["files_unknown_cid"] >= 1 and ev_p["files_unsolicited_blocks"] >= 1, ev_p
    assert ev_p["files_peers_dropped"] >= 1, ev_p
    assert fr["victim"]["closed_by"] == "victim" and fr["victim"]["close_code"] == "BAD_CHUNK", fr


def _one_mode(info: dict, mode: str, *, duration: int, max_sends: int) -> dict:
    """Run the tool's ``mode`` alone against the broadcaster ``info`` names (100 sends/s, seed
    3); checks the victim answered after it and the tool hit no error of its own, and returns
    the mode's result for the victim."""
    out = subprocess.run([sys.executable, "-m", "oasis.tools.hostile", "--victim",
                          f"{info['oftp']}:{info['peer_id']}", "--mode", mode, "--duration", str(duration),
                          "--rate", "100", "--max-sends", str(max_sends), "--seed", "3"],
                         capture_output=True, timeout=90, check=True)
    rep = json.loads(out.stdout)["modes"][mode]
    assert rep["victims_alive_after"] == 1 and not rep["victims_dead_after"], rep
    (res,) = rep["result"].values()
    assert "tool_error" not in res, res
    out_res: dict = res
    return out_res


def test_nat_mode_against_a_real_broadcaster(tmp_path):
    """The NAT and peer-exchange attacks of docs/oftp.md §14.2 as a mode (found 2026-12-02:
    the README said every §14 attack had one; these were tests only): from a service link,
    OFFERs naming the tool's UDP sink draw no dial, OBSERVED and NEIGHBOURS are unused, each
    counted, and the victim serves on."""
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "300",
                      "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    try:
        info = b.wait_info()
        res = _one_mode(info, "nat", duration=20, max_sends=100)
        sent = res["nat"]
        assert set(sent) == {"offer_sink", "offer_any", "intro", "observed", "neighbours"}, res
        assert res["sink_datagrams"] == 0, res  # not one dial for a stranger's OFFER
        events = _events(f"{info['http']}/metrics")
        assert events["nat_punch_not_neighbour"] >= sent["offer_sink"] + sent["offer_any"], events
        assert events["nat_observed_unused"] >= 1 and events["nat_pex_not_neighbour"] >= 1, events
        assert b.popen.poll() is None, "the victim died"
    finally:
        code = b.stop()
    assert code in (0, -15)


def test_dht_mode_against_a_real_broadcaster(tmp_path):
    """The DHT attacks of docs/oftp.md §14.5 as a mode (until 2026-12-03 they were tests
    only): unsolicited answers, records of another provider or expired, a request flood --
    each counted, the tool scored and banned, the victim serving on; and whatever the victim
    asked us was answered with made-up keys and records at the tool's sinks, of which it
    dials at most a handful."""
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "300",
                      "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    try:
        info = b.wait_info()
        res = _one_mode(info, "dht", duration=15, max_sends=200)
        assert set(res["dht"]) == {"unsolicited", "foreign_record", "expired_record", "flood"}, res
        assert res["sink_datagrams"] <= 10 * 12, res  # a few dials at most (~10 datagrams each)
        events = _events(f"{info['http']}/metrics")
        assert events["dht_answers_unsolicited"] >= 1 and events["dht_records_wrong_source"] >= 1, events
        assert events["dht_records_expired"] >= 1 and events["dht_peers_banned"] >= 1, events
        assert events["dht_from_banned"] >= 1, events
        assert b.popen.poll() is None, "the victim died"
    finally:
        code = b.stop()
    assert code in (0, -15)

"""What the supervisor and the data plane say to each other, and what each accepts.

The data plane is what the network talks to and runs unprivileged: the supervisor (root)
treats its messages and its counter lines as hostile. The supervisor's grants are checked by
the data plane too, so a bad one fails that tunnel, never the process.
"""

from __future__ import annotations

import array
import base64
import json
import os
import socket
from pathlib import Path

import pytest

from provisioner.tunnel import runtime
from provisioner.tunnel.channel import MAX_MESSAGE, Channel, Op, decode
from provisioner.tunnel.dataplane import Grant, endpoint_of
from provisioner.tunnel.drops import Drop
from provisioner.tunnel.supervisor import counters_of

SPEC = {"name": "core", "device": "t0", "transport": "udp", "role": "listen", "endpoint": "0.0.0.0:41000",
        "peer": None, "device_type": "tun", "pi": False, "vnet_hdr": False, "multi_queue": False,
        "private_key_file": None, "peer_public_key": None, "psk_file": None, "compress": False}


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b'{"op": "add"}', b'{"op": "add", "name": 7}',
                                  b'{"op": "add", "name": ""}', b'{"op": "explode", "name": "core"}',
                                  json.dumps({"op": "add", "name": "x" * 65}).encode(),
                                  b"[" * 100_000 + b"]" * 100_000, b"{" * (MAX_MESSAGE + 1)])
def test_anything_but_a_message_decodes_to_none(data: bytes) -> None:
    assert decode(data) is None


def test_a_message_decodes_to_its_op_name_and_body() -> None:
    m = decode(b'{"op": "failed", "name": "core", "error": "device is gone"}')
    assert m is not None and (m.op, m.name, m.body) == (Op.FAILED, "core", {"error": "device is gone"})


def test_descriptors_travel_with_a_message_and_are_closed_with_a_bad_one() -> None:
    a, b = Channel.pair()
    b.sock.setblocking(False)
    r, w = os.pipe()
    try:
        a.send(Op.ADD, "core", {"spec": SPEC}, (r,))
        m = b.receive()
        assert m is not None and m.op is Op.ADD and len(m.fds) == 1
        os.write(w, b"x")
        assert os.read(m.fds[0], 1) == b"x", "the descriptor received is the pipe sent"
        os.close(m.fds[0])
        before = len(os.listdir("/proc/self/fd"))
        a.sock.sendmsg([b"garbage"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])
        assert b.receive() is None
        assert len(os.listdir("/proc/self/fd")) == before, "the descriptor of a bad message was closed"
        assert b.receive() is None  # nothing more waiting
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


def test_a_data_planes_counter_line_is_kept_only_in_the_shapes_status_shows() -> None:
    line = json.dumps({"tunnel": "core", "state": "connected", "rx_packets": 5, "tx_bytes": "lots",
                       "since": 1.5e9, "at": True, "drops": {Drop.DECRYPT_FAILED.value: 2, "made-up": 9, Drop.REPLAYED.value: -1},
                       "peer": "p" * 1000, "extra": {"a": [1] * 10}}).encode()
    out = counters_of(line)
    assert out is not None
    assert (out["tunnel"], out["state"], out["rx_packets"], out["tx_bytes"]) == ("core", "connected", 5, 0)
    assert (out["since"], out["at"], out["drops"], len(out["peer"])) == (1.5e9, None, {Drop.DECRYPT_FAILED.value: 2}, 64)
    assert "extra" not in out
    assert counters_of(b'{"state": "connected"}') is None, "a line must name its tunnel"
    assert counters_of(b"x" * (70 * 1024)) is None
    assert counters_of(b"[" * 50_000) is None


def test_tunnels_json_is_read_without_following_links_and_keeps_only_well_formed_entries(tmp_path: Path) -> None:
    runtime.write_json(tmp_path / runtime.WANTED, {"core": SPEC, "other": {**SPEC}, "bad": 7, "x" * 65: SPEC})
    assert runtime.wanted(tmp_path) == {"core": SPEC}
    (tmp_path / runtime.WANTED).unlink()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"core": SPEC}))
    (tmp_path / runtime.WANTED).symlink_to(elsewhere)
    assert runtime.wanted(tmp_path) == {}
    (tmp_path / runtime.WANTED).unlink()
    os.mkfifo(tmp_path / runtime.WANTED)
    assert runtime.wanted(tmp_path) == {}, "a FIFO neither blocks nor counts"


def test_a_grant_is_checked_before_a_tunnel_is_made_of_it() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    assert Grant.of({"spec": SPEC, "endpoint": "192.0.2.2:41000"}).endpoint == ("192.0.2.2", 41000)
    secure = {**SPEC, "private_key_file": "/k", "peer_public_key": key}
    assert Grant.of({"spec": secure, "private_key": key}).private_key == bytes(range(32))
    for bad in ({"spec": secure}, {"spec": secure, "private_key": key[:-4]}, {"spec": secure, "private_key": "!!"},
                {"spec": {"name": "core"}}, {"spec": "nope"}, {}):
        with pytest.raises(ValueError):
            Grant.of(bad)  # type: ignore[arg-type]
    for text in ("[fd00::2]:41000", "192.0.2.2:0", "192.0.2.2:70000", "host:1", "x" * 100, 7, None):
        assert endpoint_of(text) in (None, ("fd00::2", 41000))
    assert endpoint_of("[fd00::2]:41000") == ("fd00::2", 41000)


def test_a_bad_grant_fails_its_tunnel_closes_what_came_with_it_and_the_data_plane_goes_on() -> None:
    from provisioner.tunnel.dataplane import Plane

    supervisor, plane_end = Channel.pair()
    supervisor.sock.setblocking(False)
    plane_end.sock.setblocking(False)
    plane = Plane(plane_end)
    before = len(os.listdir("/proc/self/fd"))
    try:
        for body in ({"spec": {"name": "core"}}, {"spec": {**SPEC, "role": "connect", "transport": "tcp"}},
                     {"spec": SPEC, "private_key": 7}):
            r, w = os.pipe()
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            supervisor.send(Op.ADD, "core", body, (r, udp.fileno()))
            for fd in (r, w):
                os.close(fd)
            udp.close()
            m = plane_end.receive()
            assert m is not None
            plane.command(m)
            answer = supervisor.receive()
            assert answer is not None and answer.op is Op.FAILED and answer.name == "core", answer
            assert not plane.udp and not plane.tcp
        assert len(os.listdir("/proc/self/fd")) == before, "every descriptor of a refused grant was closed"
    finally:
        supervisor.close()
        plane_end.close()


def test_counters_the_pipe_cannot_take_go_first_in_the_next_report(monkeypatch) -> None:
    """The counters pipe is non-blocking; a hub of 500 tunnels wrote more than the pipe held, the
    rest were dropped, and the same tunnels were dropped every time: they stayed `starting`."""
    import types

    from provisioner.tunnel import dataplane

    supervisor, plane_end = Channel.pair()
    try:
        plane = dataplane.Plane(plane_end)
        for i in range(10):
            line = f"t{i}".encode()
            plane.udp[f"t{i}"] = types.SimpleNamespace(stats=types.SimpleNamespace(line=lambda b=line: b,
                                                                                   due=lambda now: True))
        heard: list[bytes] = []

        room = {"left": 3}

        def fits(line: bytes) -> bool:
            if room["left"] == 0:
                return False
            room["left"] -= 1
            heard.append(line)
            return True

        monkeypatch.setattr(dataplane, "write_out", fits)
        for _ in range(4):
            room["left"] = 3
            plane.report()
        assert {f"t{i}".encode() for i in range(10)} <= set(heard), "some tunnel was never reported"
    finally:
        supervisor.close()
        plane_end.close()


def test_a_tunnel_is_reported_when_its_counters_move_and_a_quiet_one_every_few_seconds() -> None:
    from provisioner.tunnel.stats import QUIET_EVERY, Stats

    s = Stats("t")
    assert s.due(0.0), "never reported yet"
    s.line()
    import time

    now = time.monotonic()
    assert not s.due(now), "nothing moved"
    s.rx_packets += 1
    assert s.due(now), "a packet arrived"
    s.line()
    assert not s.due(now) and s.due(now + QUIET_EVERY + 0.5), "a quiet tunnel is still reported, less often"

"""The cache of validated inventories: a hit gives what a fresh load gives, and anything that
is not exactly what we wrote, where only we can write, is a miss."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from zlib import crc32

import pytest

from provisioner import cache, loader
from provisioner.errors import InventoryError
from provisioner.reconcile import load

INVENTORY = """all:
  hosts:
    h:
      ansible_connection: netns
      network:
        devices:
          - {name: t0, type: tap, addresses: [192.0.2.1/24]}
        routes:
          - {to: 198.51.100.0/24, dev: t0}
"""


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state" / "cache"
    directory.parent.mkdir(mode=0o700)
    return directory


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def test_a_hit_loads_what_a_fresh_load_loads(write, cache_dir) -> None:
    path = write(INVENTORY)
    fresh = load(path)
    first = load(path, cache_dir=cache_dir)
    assert len(entries(cache_dir)) == 1
    again = load(path, cache_dir=cache_dir)
    assert fresh.desired == first.desired == again.desired
    assert [h.name for h in again.hosts] == ["h"]


def test_an_edit_is_another_key(write, cache_dir) -> None:
    path = write(INVENTORY)
    load(path, cache_dir=cache_dir)
    Path(path).write_text(INVENTORY.replace("192.0.2.1/24", "192.0.2.2/24"))
    loaded = load(path, cache_dir=cache_dir)
    assert loaded.desired["h"].addresses[0].cidr == "192.0.2.2/24"
    assert len(entries(cache_dir)) == 2


def test_an_inventory_with_errors_or_warnings_is_not_kept(write, cache_dir) -> None:
    path = write(INVENTORY.replace("type: tap", "type: tunnel"))
    with pytest.raises(InventoryError):
        load(path, cache_dir=cache_dir)
    assert entries(cache_dir) == []


def tamper(entry: Path, header: dict | None = None, body: bytes | None = None) -> None:
    head, _, old_body = entry.read_bytes().partition(b"\n")
    new_header = {**json.loads(head), **(header or {})}
    entry.write_bytes(json.dumps(new_header).encode() + b"\n" + (old_body if body is None else body))


BAD_DATA = json.dumps({"all": {"hosts": {"h": {"ansible_connection": "netns", "network": {
    "devices": [{"name": "evil0", "type": "tap"}]}}}}}).encode()


@pytest.mark.parametrize("spoil", [
    lambda e: tamper(e, body=BAD_DATA),  # the data no longer matches its digest
    lambda e: tamper(e, header={"key": "0" * 64}),  # filed under another key
    lambda e: tamper(e, header={"format": 0}),
    lambda e: e.write_bytes(b"not json"),
    lambda e: os.chmod(e, 0o666),  # others could have written it
    lambda e: os.chmod(e.parent, 0o777),
    lambda e: (e.rename(e.with_suffix(".real")), e.symlink_to(e.with_suffix(".real"))),
])
def test_an_entry_that_is_not_ours_as_written_is_a_miss(write, cache_dir, spoil) -> None:
    path = write(INVENTORY)
    load(path, cache_dir=cache_dir)
    [entry] = entries(cache_dir)
    spoil(entry)
    slot = cache.slot(cache_dir, loader.inputs(path).texts)
    assert slot.path == entry
    assert cache.get(slot) is None
    assert [d.name for d in load(path, cache_dir=cache_dir).desired["h"].devices] == ["t0"]


def test_a_forged_entry_that_does_not_build_is_a_miss(write, cache_dir) -> None:
    """A consistent forgery (digest recomputed) needs write access to the private state
    directory, which already says what runs as root; still, data that is not even the shape
    of an inventory is not used."""
    path = write(INVENTORY)
    load(path, cache_dir=cache_dir)
    [entry] = entries(cache_dir)
    forged = json.dumps({"all": {"hosts": ["not", "a", "mapping"]}}).encode()
    tamper(entry, header={"crc32": crc32(forged)}, body=forged)
    assert cache.get(cache.slot(cache_dir, loader.inputs(path).texts)) == json.loads(forged)  # consistent: read back
    assert [d.name for d in load(path, cache_dir=cache_dir).desired["h"].devices] == ["t0"]


def test_data_that_json_would_change_is_not_kept(cache_dir) -> None:
    cache_dir.mkdir(mode=0o700)
    slot = cache.slot(cache_dir, ["x"])
    cache.put(slot, {1: "an integer key becomes a string in JSON"})
    assert cache.get(slot) is None
    for changed in ({"a": ("a tuple", "becomes a list")}, {"a": [{None: "a null key becomes 'null'"}]},
                    {"a": {True: "a true key becomes 'true'"}}, {"a": datetime.date(2026, 12, 2)}):
        cache.put(slot, changed)
        assert cache.get(slot) is None
    cache.put(slot, {"fine": [1, 2.5, True, None]})
    assert cache.get(slot) == {"fine": [1, 2.5, True, None]}


@pytest.mark.parametrize("exact", [False, True])
def test_data_with_a_cycle_is_not_kept(cache_dir, exact: bool) -> None:
    # the dump runs without check_circular: a cycle must still end the write, not the run
    cache_dir.mkdir(mode=0o700)
    slot = cache.slot(cache_dir, ["cycle"])
    cyclic: dict = {"a": []}
    cyclic["a"].append(cyclic)
    cache.put(slot, cyclic, exact=exact)
    assert cache.get(slot) is None and list(cache_dir.iterdir()) == []


def test_data_said_to_be_exact_is_kept_without_reading_it_back(cache_dir, monkeypatch) -> None:
    """`exact` (reparse.Reparser.exact vouches for the data): no JSON round trip, the same entry."""
    cache_dir.mkdir(mode=0o700)
    slot = cache.slot(cache_dir, ["exact"])
    read_back = []
    loads = json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: read_back.append(1) or loads(text, *a, **k))
    cache.put(slot, {"a": [1, "b", None]}, exact=True)
    assert read_back == []
    cache.put(cache.slot(cache_dir, ["checked"]), {"a": [1, "b", None]})
    assert read_back == [1]
    monkeypatch.undo()
    assert cache.get(slot) == {"a": [1, "b", None]}


def test_a_text_is_kept_beside_the_data_and_read_only_when_asked_for(cache_dir) -> None:
    """A kept parse's text (110 KB at 1000 devices) is not a JSON string: a verdict that refers to
    the parse needs only its data, and parsing the text as JSON too was 0.1 ms of every no-op plan."""
    cache_dir.mkdir(mode=0o700)
    slot = cache.slot(cache_dir, ["with text"])
    assert cache.put(slot, {"a": "b\nc"}, text="line one\nline two\n")
    assert cache.get(slot) == {"a": "b\nc"}
    assert cache.get_with_text(slot) == ({"a": "b\nc"}, "line one\nline two\n")
    head, _, body = slot.path.read_bytes().partition(b"\n")
    data, _, text = body.partition(b"\n")
    assert json.loads(data) == {"a": "b\nc"} and text == b"line one\nline two\n"
    not_utf8 = data + b"\n\xff\xfe"  # a forged text, its checksum made to hold: the data alone is still data
    tamper(slot.path, header={"crc32": crc32(not_utf8)}, body=not_utf8)
    assert cache.get(slot) == {"a": "b\nc"} and cache.get_with_text(slot) is None
    tamper(slot.path, body=data + b"\nline one\n")  # cut short: the checksum no longer holds
    assert cache.get(slot) is None and cache.get_with_text(slot) is None
    plain = cache.slot(cache_dir, ["without"])
    assert cache.put(plain, [1, 2]) and cache.get_with_text(plain) == ([1, 2], "")


def test_the_cache_keeps_only_the_newest_entries(cache_dir) -> None:
    cache_dir.mkdir(mode=0o700)
    for i in range(cache.KEEP + 5):
        cache.put(cache.slot(cache_dir, [str(i)]), {"i": i})
        assert cache.get(cache.slot(cache_dir, [str(i)])) == {"i": i}  # the entry just written stays
    assert len(entries(cache_dir)) == cache.KEEP


def test_the_key_covers_group_vars_and_host_vars_files_and_listings(write, cache_dir) -> None:
    """The cache keys on every file the loader reads: an edited, added or removed vars file is
    another key, never the verdict on the files as they were."""
    path = write(INVENTORY)
    base = Path(path).parent
    load(path, cache_dir=cache_dir)
    (base / "host_vars").mkdir()
    (base / "host_vars" / "h.yml").write_text(
        "network:\n  devices:\n    - {name: t1, type: tap, addresses: [203.0.113.1/24]}\n")
    assert [d.name for d in load(path, cache_dir=cache_dir).desired["h"].devices] == ["t0", "t1"]
    (base / "host_vars" / "h.yml").write_text(
        "network:\n  devices:\n    - {name: t2, type: tap, addresses: [203.0.113.1/24]}\n")
    assert [d.name for d in load(path, cache_dir=cache_dir).desired["h"].devices] == ["t0", "t2"]
    (base / "group_vars").mkdir()
    (base / "group_vars" / "all").mkdir()
    (base / "group_vars" / "all" / "x.yaml").write_text(
        "network:\n  devices:\n    - {name: t3, type: tap, addresses: [198.51.100.9/24]}\n")
    assert [d.name for d in load(path, cache_dir=cache_dir).desired["h"].devices] == ["t3", "t0", "t2"]
    (base / "group_vars" / "all" / "x.yaml").unlink()
    assert [d.name for d in load(path, cache_dir=cache_dir).desired["h"].devices] == ["t0", "t2"]
    assert len(entries(cache_dir)) == 5
    again = load(path, cache_dir=cache_dir)
    assert again.from_cache and [d.name for d in again.desired["h"].devices] == ["t0", "t2"]


def test_a_host_name_does_not_lead_the_loader_out_of_host_vars(tmp_path) -> None:
    """A host named `../secret` is refused by validate; before that, the loader must not read
    `host_vars/../secret.yml` (a file beside the inventory, or anywhere)."""
    (tmp_path / "secret.yml").write_text("network: {devices: [{name: leak0, type: tap}]}\n")
    (tmp_path / "host_vars").mkdir()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("all:\n  hosts:\n    ../secret:\n      ansible_connection: netns\n")
    inv, _ = loader.load(str(inventory))
    [host] = inv.hosts
    assert "network" not in host.vars and not host.network
    with pytest.raises(InventoryError, match="host name"):
        load(str(inventory))


def test_an_edited_copy_is_patched_from_the_last_parse_as_a_fresh_load_reads(write, cache_dir, monkeypatch) -> None:
    from provisioner import reparse

    monkeypatch.setattr(reparse, "KEEP_FROM", 0)  # INVENTORY is short: kept all the same
    first = write(INVENTORY)
    load(first, cache_dir=cache_dir)
    parsed: list[str] = []
    real = reparse.parse_nodes
    monkeypatch.setattr(reparse, "parse_nodes", lambda source: parsed.append(source.text) or real(source))
    edited = INVENTORY.replace("{to: 198.51.100.0/24, dev: t0}", "{to: 198.51.100.0/24, dev: t0, metric: 7}")
    second = write(edited, "changed.yaml")
    loaded = load(second, cache_dir=cache_dir)
    assert parsed == []  # the changed line alone, read without ruamel (reparse.plain_item)
    assert not loaded.from_cache
    assert loaded.desired == load(second).desired
    assert loaded.desired["h"].routes[0].metric == 7
    octal = write(edited.replace("metric: 7}", "metric: 010}"), "octal.yaml")  # YAML 1.1: 8
    assert load(octal, cache_dir=cache_dir).desired["h"].routes[0].metric == 8
    assert parsed == ["{to: 198.51.100.0/24, dev: t0, metric: 010}"]  # that line alone, by ruamel
    assert len(entries(cache_dir / "parses")) == 1  # one per shape: the texts have the same


def _verdict(cache_dir: Path, path: str) -> tuple[Path, dict]:
    entry = cache.slot(cache_dir, loader.inputs(path).texts).path
    return entry, json.loads(entry.read_bytes().partition(b"\n")[2])


def _edited(write, cache_dir: Path, monkeypatch) -> str:
    """A kept parse of INVENTORY, and an edit of one of its routes loaded (so judged and kept)."""
    from provisioner import reparse

    monkeypatch.setattr(reparse, "KEEP_FROM", 0)  # INVENTORY is short: kept all the same
    load(write(INVENTORY), cache_dir=cache_dir)
    edited = write(INVENTORY.replace("dev: t0}", "dev: t0, metric: 7}"), "edited.yaml")
    assert not load(edited, cache_dir=cache_dir).from_cache
    return edited


def test_an_edit_s_verdict_refers_to_the_kept_parse_and_holds_only_the_items_put_in_place(
        write, cache_dir, monkeypatch) -> None:
    """An edited inventory's verdict copied the whole parse (98 KB at 1000 devices, 1.2 ms of a
    one-change apply to write) where the kept parse it was patched from holds all but the edit."""
    edited = _edited(write, cache_dir, monkeypatch)
    [kept] = entries(cache_dir / "parses")
    _, verdict = _verdict(cache_dir, edited)
    assert verdict == {"files": {}, "kept": {edited: [kept.stem, json.loads(kept.read_bytes().split(b"\n")[1])["id"],
                                                      [[["all", "hosts", "h", "network", "routes"], 0,
                                                        {"to": "198.51.100.0/24", "dev": "t0", "metric": 7}]]]}}
    again = load(edited, cache_dir=cache_dir)
    assert again.from_cache and again.desired == load(edited).desired
    assert again.desired["h"].routes[0].metric == 7


def _spoil_reference(edit):
    def spoil(entry: Path, verdict: dict) -> None:
        [reference] = verdict["kept"].values()
        edit(reference)
        body = json.dumps(verdict).encode()
        tamper(entry, header={"crc32": crc32(body)}, body=body)  # consistent: only the reference is wrong
    return spoil


def _rekept(entry: Path, verdict: dict) -> None:
    [reference] = verdict["kept"].values()
    parse = entry.parent / "parses" / f"{reference[0]}.json"
    _, body, text = parse.read_bytes().split(b"\n", 2)
    data = json.loads(body)
    data["id"] = "0" * 16  # another parse kept under the same key since
    body = json.dumps(data).encode() + b"\n" + text
    tamper(parse, header={"crc32": crc32(body)}, body=body)


@pytest.mark.parametrize("spoil", [
    _spoil_reference(lambda r: r.__setitem__(1, "another id")),
    _spoil_reference(lambda r: r.__setitem__(0, "../" + r[0][3:])),  # a key that names a file elsewhere
    _spoil_reference(lambda r: r.__setitem__(0, "f" * 64)),  # no such kept parse
    _spoil_reference(lambda r: r[2][0].__setitem__(1, 5)),  # an index past the list
    _spoil_reference(lambda r: r[2][0].__setitem__(1, True)),
    _spoil_reference(lambda r: r[2][0].__setitem__(0, ["all", "hosts", "h", "network"])),  # not a list
    _spoil_reference(lambda r: r[2][0].__setitem__(0, "all")),
    _spoil_reference(lambda r: r[2][0].pop()),
    _spoil_reference(lambda r: r.__setitem__(2, {"not": "a list"})),
    _spoil_reference(lambda r: r.pop()),
    _rekept,
    lambda entry, verdict: next((entry.parent / "parses").glob("*.json")).unlink(),
])
def test_a_reference_that_does_not_lead_to_its_kept_parse_is_a_miss(write, cache_dir, monkeypatch, spoil) -> None:
    edited = _edited(write, cache_dir, monkeypatch)
    entry, verdict = _verdict(cache_dir, edited)
    spoil(entry, verdict)
    assert cache.get_verdict(cache.slot(cache_dir, loader.inputs(edited).texts)) is None
    again = load(edited, cache_dir=cache_dir)
    assert not again.from_cache and again.desired == load(edited).desired


def test_a_fifo_at_an_entry_s_name_in_a_directory_others_can_write_is_a_miss_at_once(tmp_path: Path) -> None:
    """Found by an attacker's-eye review: the entry was opened (and open() waits on a FIFO for a
    writer) before the directory was found not to be private, so a FIFO planted there held the run."""
    import signal

    class Waited(Exception):  # not an OSError, which the cache would take for a miss
        pass

    def stuck(*_: object) -> None:
        raise Waited("cache.get waited on the FIFO")

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not ours alone: every entry in it is a miss
    s = cache.slot(shared, ["x"])
    os.mkfifo(s.path)
    previous = signal.signal(signal.SIGALRM, stuck)
    try:
        for mode in (0o777, 0o700):  # ours alone: a FIFO there is still no entry, and not waited on
            os.chmod(shared, mode)
            signal.alarm(30)
            assert cache.get(s) is None
            signal.alarm(0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

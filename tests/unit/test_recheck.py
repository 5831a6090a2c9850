"""Host checks after an edit (recheck.py): an inventory that differs from one that passed only in
some routes has the routes of their keys checked again, and nothing else; whatever the edit, a
load says what a load with no cache says, problem for problem."""

from __future__ import annotations

import json
import random
from pathlib import Path
from zlib import crc32

import pytest

from provisioner import recheck, reconcile, reparse, validate
from provisioner.errors import InventoryError
from provisioner.reconcile import load

DEVICES = [  # (name, extra): t2 is down, t3 absent, t4 has no address
    ("t0", "addresses: [192.0.2.1/24]"), ("t1", "addresses: [198.51.100.1/24, 'fd00:1::1/64']"),
    ("t2", "state: down, addresses: [203.0.113.1/24]"), ("t3", "state: absent"), ("t4", "mtu: 1400"),
]
GROUP_ROUTES = ["{to: 10.9.0.0/16, via: 192.0.2.254}", "{to: 10.8.0.0/16, dev: t4}"]


def host_lines(h: int, routes: list[str]) -> list[str]:
    lines = [f"    h{h}:", "      ansible_connection: netns", "      network:", "        devices:"]
    lines += [f"          - {{name: {name}, type: tap, {extra}}}" for name, extra in DEVICES]
    return lines + ["        routes:"] + [f"          - {r}" for r in routes]


def inventory(hosts: dict[int, list[str]], group_routes: list[str] = GROUP_ROUTES) -> str:
    lines = ["all:", "  vars:", "    network:", "      routes:"] + [f"        - {r}" for r in group_routes]
    lines.append("  hosts:")
    for h, routes in hosts.items():
        lines += host_lines(h, routes)
    return "\n".join(lines) + "\n"


BASE_ROUTES = [f"{{to: 10.{i}.0.0/16, dev: t{i % 2}}}" for i in range(6)] + [
    "{to: 10.9.0.0/16, via: 198.51.100.254}",  # the group's route, replaced on this host
    "{to: 10.20.0.0/16, via: 192.0.2.9, dev: t0, metric: 7}", "{to: 'fd00:2::/64', dev: t1}",
]
BASE = inventory({0: BASE_ROUTES, 1: BASE_ROUTES[:4]})


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(reparse, "KEEP_FROM", 0)  # a short text is kept all the same
    (tmp_path / "state").mkdir(mode=0o700)
    return tmp_path / "state" / "cache"


class Spy:
    """What check_host was asked to look at, host by host, and whether check_peers ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.routes: list[tuple | None] = []
        self.peers = 0
        real_host, real_peers = validate.check_host, validate.check_peers

        def check_host(source, host, routes_only=None):  # type: ignore[no-untyped-def]
            self.routes.append(None if routes_only is None else tuple(e.value for e in routes_only))
            return real_host(source, host, routes_only)

        def check_peers(source, hosts):  # type: ignore[no-untyped-def]
            self.peers += 1
            return real_peers(source, hosts)

        monkeypatch.setattr(reconcile, "check_host", check_host)
        monkeypatch.setattr(reconcile, "check_peers", check_peers)

    def clear(self) -> None:
        self.routes.clear()
        self.peers = 0


def outcome(path: Path, cache_dir: Path | None) -> list[str]:
    """Every problem a load finds, as the CLI would say each (none: [])."""
    try:
        loaded = load(str(path), cache_dir=cache_dir)
    except InventoryError as exc:
        return [str(d) for d in exc.diagnostics]
    return [str(d) for d in loaded.warnings]


def test_a_route_edited_after_a_clean_load_is_the_only_item_checked_again(tmp_path: Path, cache_dir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-change apply of the benchmark: a route moved to another device, in a copy of the
    inventory beside it. Before recheck.py every item of every host was checked again."""
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    spy = Spy(monkeypatch)
    edited = BASE.replace("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t1}", 1)
    (tmp_path / "b.yaml").write_text(edited)
    assert outcome(tmp_path / "b.yaml", cache_dir) == []
    # h0's item, and h1's own route of that key (what a key is depends on the item alone: h1 holds the same)
    assert spy.routes == [({"to": "10.2.0.0/16", "dev": "t1"},), ({"to": "10.2.0.0/16", "dev": "t0"},)]
    assert spy.peers == 0
    spy.clear()  # an edit of a: told apart from a as first loaded, not from b
    (tmp_path / "a.yaml").write_text(BASE.replace("- {to: 10.5.0.0/16, dev: t1}", "- {to: 10.5.0.0/16, dev: t4}"))
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    assert spy.routes == [({"to": "10.5.0.0/16", "dev": "t4"},), ()] and spy.peers == 0


def test_a_route_edited_into_a_problem_is_found_as_a_whole_check_finds_it(tmp_path: Path, cache_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    spy = Spy(monkeypatch)
    for new in ["{to: 10.2.0.0/16, dev: t2}", "{to: 10.2.0.0/16, dev: t3}", "{to: 10.2.0.0/16, via: 203.0.113.9, dev: t0}",
                "{to: 10.2.0.0/16, via: nowhere, dev: t0}",
                "{to: 10.2.0.0/16}"]:
        spy.clear()
        (tmp_path / "b.yaml").write_text(BASE.replace("{to: 10.2.0.0/16, dev: t0}", new, 1))
        found = outcome(tmp_path / "b.yaml", cache_dir)
        assert spy.routes[0] is not None and spy.peers == 0, new  # found by the routes alone
        assert found and found == outcome(tmp_path / "b.yaml", None), new


def test_an_edit_of_anything_but_routes_some_host_holds_is_checked_whole(tmp_path: Path, cache_dir: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A device is checked against the others; a route that no host holds is hidden by a layer
    above, and what it was is not told apart."""
    (tmp_path / "host_vars").mkdir()  # h0's route to 10.3.0.0/16 is its host_vars' one
    (tmp_path / "host_vars" / "h0.yml").write_text("network:\n  routes:\n    - {to: 10.3.0.0/16, dev: t4}\n")
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    spy = Spy(monkeypatch)
    for old, new, whole in [
        ("{name: t4, type: tap, mtu: 1400}", "{name: t4, type: tap, mtu: 1500}", True),  # a device
        ("{name: t4, type: tap, mtu: 1400}", "{name: t4, type: tap, addresses: [192.0.2.1/24]}", True),
        ("{to: 10.3.0.0/16, dev: t1}", "{to: 10.3.0.0/16, dev: t2}", True),  # h0's, under its host_vars' one
        ("{to: 10.8.0.0/16, dev: t4}", "{to: 10.8.0.0/16, dev: t0}", False),  # the group's, held by both hosts
        ("{to: 10.9.0.0/16, via: 192.0.2.254}", "{to: 10.9.0.0/16, via: 192.0.2.253}", False),  # h1's; h0 has its own
        ("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t4}", False),
        ("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t0, metric: 9}", False),  # another key
        ("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t0, table: 255}", False),
    ]:
        spy.clear()
        (tmp_path / "b.yaml").write_text(BASE.replace(old, new, 1))
        assert outcome(tmp_path / "b.yaml", cache_dir) == outcome(tmp_path / "b.yaml", None)
        assert (spy.routes[0] is None) == whole, (old, new, spy.routes)


def test_a_route_that_takes_another_key_shows_the_route_it_hid(tmp_path: Path, cache_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """h0's host_vars route to 10.3.0.0/16 hides the inventory's, whose device is down (never
    checked: no route of h0's). Its key edited, the inventory's is h0's again, and wrong."""
    (tmp_path / "host_vars").mkdir()
    vars_file = tmp_path / "host_vars" / "h0.yml"
    vars_file.write_text("network:\n  routes:\n    - {to: 10.3.0.0/16, dev: t4}\n")
    (tmp_path / "a.yaml").write_text(BASE.replace("{to: 10.3.0.0/16, dev: t1}", "{to: 10.3.0.0/16, dev: t2}", 1))
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    spy = Spy(monkeypatch)
    for edited, now in [("{to: 10.33.0.0/16, dev: t4}", {"to": "10.33.0.0/16", "dev": "t4"}),
                        ("{to: 10.3.0.0/16, dev: t4, metric: 1}", {"to": "10.3.0.0/16", "dev": "t4", "metric": 1})]:
        spy.clear()
        vars_file.write_text(f"network:\n  routes:\n    - {edited}\n")
        found = outcome(tmp_path / "a.yaml", cache_dir)
        assert spy.routes[0] == ({"to": "10.3.0.0/16", "dev": "t2"}, now), edited
        assert found == outcome(tmp_path / "a.yaml", None) and "device t2 is declared down" in found[0], found


def test_an_edit_is_told_apart_from_the_noted_load_not_from_the_kept_parse(tmp_path: Path, cache_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept parse is of a text that failed; the note, of its fix. The group's route to
    10.40.0.0/16 is on a down device, and each host replaces it with its own. An edit that moves
    h1's away from that key, from the fix, shows the group's on h1 again: found, as the fix had
    the key that the kept text did not."""
    base = inventory({0: BASE_ROUTES[:4] + ["{to: 10.40.0.0/16, dev: t0}"],
                      1: BASE_ROUTES[:4] + ["{to: 10.40.0.0/16, dev: t1}"]}, GROUP_ROUTES + ["{to: 10.40.0.0/16, dev: t2}"])
    mine = "{to: 10.40.0.0/16, dev: t1}"
    (tmp_path / "a.yaml").write_text(base.replace(mine, "{to: 10.41.0.0/16, dev: t2}"))
    assert outcome(tmp_path / "a.yaml", cache_dir) != []  # kept, and not noted
    (tmp_path / "a.yaml").write_text(base)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []  # noted: h1's line as written here
    spy = Spy(monkeypatch)
    (tmp_path / "a.yaml").write_text(base.replace(mine, "{to: 10.42.0.0/16, dev: t1}"))
    found = outcome(tmp_path / "a.yaml", cache_dir)
    assert spy.routes[0] is not None
    assert found == outcome(tmp_path / "a.yaml", None) and "device t2 is declared down" in found[0], found


def test_an_edit_where_another_file_changed_too_is_checked_whole(tmp_path: Path, cache_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The note holds everything else the load read: a vars file changed beside the edited line,
    a copy in another directory, are not the noted inventory."""
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    spy = Spy(monkeypatch)
    edited = BASE.replace("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t1}", 1)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h1.yml").write_text("network:\n  routes:\n    - {to: 10.2.0.0/16, dev: t2}\n")
    (tmp_path / "a.yaml").write_text(edited)
    assert outcome(tmp_path / "a.yaml", cache_dir) == outcome(tmp_path / "a.yaml", None) != []
    assert spy.routes[0] is None
    spy.clear()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.yaml").write_text(edited)
    assert outcome(tmp_path / "elsewhere" / "a.yaml", cache_dir) == []
    assert spy.routes[0] is None


def test_a_route_edited_in_a_vars_file_is_the_only_item_checked_again(tmp_path: Path, cache_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "host_vars").mkdir()
    vars_file = tmp_path / "host_vars" / "h1.yml"
    vars_file.write_text("network:\n  routes:\n    - {to: 10.30.0.0/16, dev: t0}\n    - {to: 10.31.0.0/16, dev: t1}\n")
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    spy = Spy(monkeypatch)
    vars_file.write_text(vars_file.read_text().replace("10.31.0.0/16, dev: t1", "10.31.0.0/16, dev: t2"))
    assert outcome(tmp_path / "a.yaml", cache_dir) == outcome(tmp_path / "a.yaml", None) != []
    assert spy.routes[:2] == [(), ({"to": "10.31.0.0/16", "dev": "t2"},)]


@pytest.mark.parametrize("forged", [[], {"replaced": {}}, {"replaced": [[["all"], "0", {}]]},
                                    {"replaced": [[[["x"]], 0, {}]]}, {"replaced": [[["all", "hosts"], 0, []]]},
                                    {"replaced": [[["all", "hosts", "h0", "network", "routes"], 99, {}]]}])
def test_a_note_not_as_written_is_no_note(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                          forged: object) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    (note,) = (cache_dir / recheck.NOTES).glob("*.json")
    header = note.read_bytes().split(b"\n", 1)[0]
    body = json.dumps(forged).encode()
    note.write_bytes(json.dumps({**json.loads(header), "crc32": crc32(body)}).encode() + b"\n" + body)
    spy = Spy(monkeypatch)
    (tmp_path / "b.yaml").write_text(BASE.replace("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t2}", 1))
    assert outcome(tmp_path / "b.yaml", cache_dir) == outcome(tmp_path / "b.yaml", None) != []
    assert spy.routes[0] is None


def test_random_edits_are_judged_as_a_load_without_a_cache_judges_them(tmp_path: Path, cache_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Edits of one to three item lines, devices and routes, after a clean load and after one another:
    each load with the cache finds the problems one without it finds, no more and no fewer,
    and the routes alone are checked again where only routes changed."""
    rng = random.Random(26)
    spy = Spy(monkeypatch)
    values = {
        "to": ["10.2.0.0/16", "10.2.0.1/16", "10.3.0.0/16", "default", "10.99.0.0/16"],
        "dev": ["t0", "t1", "t2", "t3", "t4", "t9"],
        "via": ["192.0.2.9", "198.51.100.9", "203.0.113.9", "10.0.0.1", "x"],
        "metric": ["0", "7", "1024"], "table": ["254", "100", "255"], "state": ["present", "absent"],
    }

    def route(line: str) -> str:
        kept = "to:" in line and rng.random() < 0.7  # mostly its key kept, and dev, via or state edited
        fields = {k: v.strip("'") for k, v in (f.split(": ", 1) for f in line[line.index("{") + 1:line.rindex("}")]
                                              .split(", ")) if k in ("to", "metric", "table")} if kept else {}
        fields.setdefault("to", rng.choice(values["to"]))
        for key, odds in (("dev", 0.7), ("via", 0.25), ("state", 0.1), ("metric", 0.1), ("table", 0.1)):
            if key not in fields and rng.random() < odds and not (kept and key in ("metric", "table")):
                fields[key] = rng.choice(values[key])
        return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"

    def device() -> str:
        name, extra = rng.choice(DEVICES)
        return "{" + f"name: {name}, type: tap, " + rng.choice([extra, "addresses: [192.0.2.1/24]", "state: down",
                                                               "addresses: [10.0.0.1/8]"]) + "}"

    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    base_lines = BASE.split("\n")
    # not the quoted lines: a quote is parsed whole, and the parse it makes is kept (reparse.py), so the
    # edits after it are told apart from it, not from BASE
    items = [i for i, line in enumerate(base_lines) if "- {" in line and "'" not in line]
    checked = {"routes": 0, "whole": 0, "clean": 0}
    for _ in range(250):
        lines = list(base_lines)
        for at in rng.sample(items, rng.randrange(1, 4)):
            indent = lines[at][:lines[at].index("- {") + 2]
            lines[at] = indent + (device() if "name:" in lines[at] else route(lines[at]))
        text = "\n".join(lines)
        (tmp_path / "b.yaml").write_text(text)
        spy.clear()
        with_cache = outcome(tmp_path / "b.yaml", cache_dir)
        how = "cached" if not spy.routes else "whole" if spy.routes[0] is None else "routes"  # cached: seen before
        assert with_cache == outcome(tmp_path / "b.yaml", None), text
        checked[how] = checked.get(how, 0) + 1
        checked["clean"] += not with_cache
    assert checked["routes"] > 20 and checked["whole"] > 20 and checked["clean"] > 10, checked


GOOD_VARS = "network:\n  devices:\n    - {name: t5, type: tap, mac: '02:00:5e:00:00:01'}\n"
BAD_VARS = GOOD_VARS.replace("'02:", "'01:")  # a multicast MAC: check_host says so


def test_a_file_the_load_read_but_its_listing_did_not_show_vouches_for_nothing(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """host_vars/ that can be entered but not listed (mode 0311, as a user who is not root sees
    it): os.walk skips it without a word, the loader finds host_vars/h0.yml by its name. Its text
    was in no note's key, and a later edit of a route passed with that file's devices unchecked
    (found in review). No note, and no verdict, speaks for a load that read such a file."""
    import os

    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, *a, **k: iter(()) if "host_vars" in str(top) else real_walk(top, *a, **k))
    (tmp_path / "host_vars").mkdir()
    vars_file = tmp_path / "host_vars" / "h0.yml"
    vars_file.write_text(GOOD_VARS)
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []
    vars_file.write_text(BAD_VARS)
    (tmp_path / "a.yaml").write_text(BASE.replace("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t4}", 1))
    found = outcome(tmp_path / "a.yaml", cache_dir)
    assert found == outcome(tmp_path / "a.yaml", None) and "multicast" in found[0], found


def test_a_file_saved_while_a_load_read_it_vouches_for_nothing(tmp_path: Path, cache_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A vars file saved between the load's hash of its inputs and its read of them: the verdict
    and the note were keyed by the text before and held the judgement of the text after, a text
    that never passed with the other (found in review). Its later edits passed unchecked, and so
    did the load of that first text itself, as a verdict found."""
    from provisioner import loader

    (tmp_path / "host_vars").mkdir()
    vars_file = tmp_path / "host_vars" / "h0.yml"
    vars_file.write_text(BAD_VARS)
    (tmp_path / "a.yaml").write_text(BASE)
    real = loader.inputs

    def saved_meanwhile(path: str) -> loader.Inputs:
        out = real(path)
        vars_file.write_text(GOOD_VARS)  # the fix saved just after the inputs were read
        return out

    monkeypatch.setattr(loader, "inputs", saved_meanwhile)
    assert outcome(tmp_path / "a.yaml", cache_dir) == []  # it read the fix: clean, but of what?
    monkeypatch.setattr(loader, "inputs", real)
    vars_file.write_text(BAD_VARS)  # undone
    assert "multicast" in outcome(tmp_path / "a.yaml", cache_dir)[0]  # no verdict keyed by this text
    (tmp_path / "a.yaml").write_text(BASE.replace("{to: 10.2.0.0/16, dev: t0}", "{to: 10.2.0.0/16, dev: t4}", 1))
    found = outcome(tmp_path / "a.yaml", cache_dir)
    assert found == outcome(tmp_path / "a.yaml", None) and "multicast" in found[0], found


def test_a_vars_file_named_relative_to_the_working_directory_is_noted(tmp_path: Path, cache_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`provision plan hosts.yml`: the listing names ./host_vars/h0.yml, the loader host_vars/h0.yml;
    both are one file, and its edit is told apart by its routes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "host_vars").mkdir()
    vars_file = tmp_path / "host_vars" / "h0.yml"
    vars_file.write_text("network:\n  routes:\n    - {to: 10.30.0.0/16, dev: t0}\n")
    (tmp_path / "a.yaml").write_text(BASE)
    assert outcome(Path("a.yaml"), cache_dir) == []
    spy = Spy(monkeypatch)
    vars_file.write_text(vars_file.read_text().replace("dev: t0", "dev: t4"))
    assert outcome(Path("a.yaml"), cache_dir) == []
    assert spy.routes[0] == ({"to": "10.30.0.0/16", "dev": "t4"},)


def test_random_route_edits_in_every_layer_are_judged_as_a_load_without_a_cache_judges_them(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes in every layer a host's network merges (the all group's vars, a child group's, a
    grandchild's host, host_vars/, group_vars/ as a file and as a directory), keys that meet
    across layers, and edits of one to three routes at a time, each from the clean start or
    from the last clean edit: each load with the cache says what one without it says (the
    reviewer's differential fuzz, kept)."""
    rng = random.Random(4)
    spy = Spy(monkeypatch)
    devices = ["{name: t0, type: tap, addresses: [192.0.2.1/24]}", "{name: t1, type: tap, addresses: [198.51.100.1/24]}",
               "{name: t2, type: tap, state: down}", "{name: t3, type: tap, state: absent}"]

    def route() -> str:
        fields = {"to": rng.choice(["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "default", "10.4.0.1/16"])}
        for key, odds, choices in (("dev", 0.8, ["t0", "t1", "t2", "t3", "eth9"]),
                                   ("via", 0.3, ["192.0.2.9", "198.51.100.9", "203.0.113.9", "zz"]),
                                   ("metric", 0.2, ["5", "100", "1024"]), ("table", 0.1, ["100", "255"]),
                                   ("state", 0.1, ["absent", "present"])):
            if rng.random() < odds:
                fields[key] = rng.choice(choices)
        return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"

    def items(indent: str, lines: list[str]) -> list[str]:
        return [indent + "- " + line for line in lines]

    def write(r: dict[str, list[str]]) -> None:
        inv = (["all:", "  vars:", "    network:", "      routes:"] + items(" " * 8, r["all"])
               + ["  hosts:", "    h2:", "      network:", "        devices:"] + items(" " * 10, devices)
               + ["        routes:"] + items(" " * 10, r["h2"])
               + ["  children:", "    g1:", "      vars:", "        network:", "          routes:"] + items(" " * 12, r["g1"])
               + ["      hosts:", "        h1:", "          network:", "            devices:"] + items(" " * 14, devices)
               + ["            routes:"] + items(" " * 14, r["h1"])
               + ["      children:", "        g2:", "          hosts:", "            h0:", "              network:",
                  "                devices:"] + items(" " * 18, devices) + ["                routes:"]
               + items(" " * 18, r["h0"]))
        (tmp_path / "inv.yml").write_text("\n".join(inv) + "\n")
        for name, key in (("group_vars/g2.yml", "gv2"), ("host_vars/h1.yml", "hv1"), ("group_vars/all/x.yml", "gva")):
            (tmp_path / name).write_text("network:\n  routes:\n" + "\n".join(items("    ", r[key])) + "\n")

    for sub in ("group_vars/all", "host_vars"):
        (tmp_path / sub).mkdir(parents=True)
    base = {k: [f"{{to: 10.{50 + n * 5 + i}.0.0/16, dev: t{i % 2}}}" for i in range(3)]
            for n, k in enumerate(["all", "h2", "g1", "h1", "h0", "gv2", "hv1", "gva"])}
    write(base)
    assert outcome(tmp_path / "inv.yml", cache_dir) == []
    last = base
    checked: dict[str, int] = {}
    for _ in range(150):
        r = {k: list(v) for k, v in (base if rng.random() < 0.5 else last).items()}
        for _ in range(rng.randrange(1, 4)):
            k = rng.choice(list(r))
            i = rng.randrange(len(r[k]))
            r[k][i] = (route() if rng.random() < 0.7 else r[k][(i + 1) % len(r[k])] if rng.random() < 0.5
                       else rng.choice([line for lines in r.values() for line in lines]))
        write(r)
        spy.clear()
        with_cache = outcome(tmp_path / "inv.yml", cache_dir)
        how = "cached" if not spy.routes else "whole" if spy.routes[0] is None else "routes"
        assert with_cache == outcome(tmp_path / "inv.yml", None), r
        checked[how] = checked.get(how, 0) + 1
        if not with_cache and rng.random() < 0.5:
            last = r
    assert checked.get("routes", 0) > 30 and checked.get("whole", 0) > 30, checked


def test_a_text_that_is_not_ascii_is_read_alike_and_kept(tmp_path: Path, cache_dir: Path) -> None:
    """The inputs are hashed as Latin-1, the loader reads UTF-8: the same bytes, compared as bytes."""
    (tmp_path / "a.yaml").write_text("# réseau de l'équipe\n" + BASE, encoding="utf-8")
    assert not load(str(tmp_path / "a.yaml"), cache_dir=cache_dir).from_cache
    assert load(str(tmp_path / "a.yaml"), cache_dir=cache_dir).from_cache

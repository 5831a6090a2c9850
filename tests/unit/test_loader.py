"""Loading every file form Ansible accepts; each problem says FILE:LINE:COLUMN, whatever the form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.errors import InventoryError
from provisioner.hostpattern import expand
from provisioner.reconcile import load

NETNS_HOST = "all:\n  hosts:\n    v1:\n      ansible_connection: netns\n"
TAP5 = "network:\n  devices:\n    - {name: tap5, type: tap}\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("name", ["host_vars/v1.yaml", "host_vars/v1.yml", "host_vars/v1.json", "host_vars/v1",
                                  "host_vars/v1/net.yml", "group_vars/all.yaml", "group_vars/all/x/y"])
def test_host_vars_and_group_vars_are_read(tmp_path: Path, name: str) -> None:
    """Why 1: host_vars/v1.yaml declaring tap5 was silently ignored."""
    text = '{"network": {"devices": [{"name": "tap5", "type": "tap"}]}}' if name.endswith(".json") else TAP5
    tree(tmp_path, {"inventory.yaml": NETNS_HOST, name: text})
    assert [d.name for d in load(str(tmp_path / "inventory.yaml")).desired["v1"].devices] == ["tap5"]


def test_a_vars_directory_is_listed_once_not_asked_for_each_host(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each host asked for four names, each whether a directory and then whether there: eight
    lookups a host, for each of a fleet's hosts. Only names the directory lists are looked at now;
    a dangling link among them is still no file (Ansible: os.path.exists)."""
    hosts = "".join(f"    v{i}:\n      ansible_connection: netns\n" for i in range(20))
    tree(tmp_path, {"inventory.yaml": "all:\n  hosts:\n" + hosts, "host_vars/v3.yml": TAP5})
    (tmp_path / "host_vars" / "v4.yaml").symlink_to(tmp_path / "nowhere")
    asked: list[str] = []
    exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: asked.append(str(p)) or exists(p))
    loaded = load(str(tmp_path / "inventory.yaml"))
    assert [d.name for d in loaded.desired["v3"].devices] == ["tap5"]
    assert loaded.desired["v4"].devices == ()
    assert sorted(Path(p).name for p in asked if Path(p).parent.name.endswith("_vars")) == ["v3.yml", "v4.yaml"]


def test_a_directory_inventory_and_an_ini_one(tmp_path: Path) -> None:
    """Why 1: `Is a directory`, and INI read as YAML."""
    tree(tmp_path, {"inv/a.ini": "[lab]\nv1 ansible_connection=netns\n", "inv/group_vars/lab.yml": TAP5})
    loaded = load(str(tmp_path / "inv"))
    assert [d.name for d in loaded.desired["v1"].devices] == ["tap5"]
    assert loaded.hosts[0].groups == ("all", "lab")


CASES = {
    "yaml": ({"inventory.yaml": NETNS_HOST + "      network:\n        devices:\n          - {name: t0, type: tun, mtu: x}\n"},
             "inventory.yaml:7:40: all.hosts.v1.network.devices[0].mtu: expected integer"),
    "yaml-syntax": ({"inventory.yaml": "all:\n  hosts:\n   - [\n"}, "inventory.yaml:4:1: YAML syntax error"),
    "ini-syntax": ({"inventory.ini": "[lab]\nv1\n[lab:nope]\n"}, "inventory.ini:3:1: section [lab:nope] has unknown"),
    "ini-value": ({"inventory.ini": "[lab]\nv1 ansible_connection=netns network=\"{'devices': 5}\"\n"},
                  "inventory.ini:2:29: lab.hosts.v1.network.devices: expected array"),
    "ini-children": ({"inventory.ini": "[lab:children]\nnowhere\n"}, "inventory.ini:2:1: section [lab:children]"),
    "group_vars-yml": ({"inventory.yaml": NETNS_HOST, "group_vars/all.yml": "network:\n  devices:\n    - {name: t0}\n"},
                       "group_vars/all.yml:3:7: network.devices[0]: 'type' is a required property"),
    "host_vars-json": ({"inventory.yaml": NETNS_HOST, "host_vars/v1.json": '{\n  "network": {"devicez": []}\n}\n'},
                       "host_vars/v1.json:2:15: network.devicez: unknown key 'devicez' (did you mean 'devices'?)"),
    "host_vars-noext": ({"inventory.yaml": NETNS_HOST, "host_vars/v1/net": "network:\n  routes:\n    - {to: nowhere, dev: x}\n"},
                        "host_vars/v1/net:3:12: network.routes[0].to: 'nowhere' is not a network"),
    "dir-ini-merged": ({"inv/a.yaml": NETNS_HOST, "inv/b": "[lab]\nv1 mtu=1\n",
                        "inv/host_vars/v1.yaml": "network:\n  devices:\n    - {name: t, type: tap, mtu: 70000}\n"},
                       "inv/host_vars/v1.yaml:3:33: network.devices[0].mtu"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_every_file_form_places_its_errors(tmp_path: Path, case: str) -> None:
    files, expected = CASES[case]
    tree(tmp_path, files)
    target = next(iter(files)).split("/")[0]
    with pytest.raises(InventoryError) as raised:
        load(str(tmp_path / target))
    text = str(raised.value).replace(str(tmp_path) + "/", "")
    assert expected in text, text


@pytest.mark.parametrize("pattern, names, port", [
    ("web[01:03]", ["web01", "web02", "web03"], None),
    ("db-[a:c]:2222", ["db-a", "db-b", "db-c"], 2222),
    ("n[0:10:5]x[1:2]", ["n0x1", "n0x2", "n5x1", "n5x2", "n10x1", "n10x2"], None),
    ("[2001:db8::1]:22", ["2001:db8::1"], 22),
    ("2001:db8::1", ["2001:db8::1"], None),
])
def test_host_patterns(pattern: str, names: list[str], port: int | None) -> None:
    assert expand(pattern) == (names, port)


def test_a_bad_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="same width"):
        expand("web[01:100]")


def _laughs(levels: int) -> str:
    lines = ["all:", "  vars:", '    a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines + ["  hosts:", "    h: {ansible_connection: netns, ansible_host: x}"]) + "\n"


def test_a_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    # Nine lines of nine aliases stand for 387 million strings: the walk of the schema, the
    # cache and the merge never ended (a pull agent following such a repository hung).
    import time

    inv = tmp_path / "inv.yaml"
    inv.write_text(_laughs(9))
    start = time.monotonic()
    with pytest.raises(InventoryError) as exc:
        load(str(inv), cache_dir=tmp_path / "cache")
    assert time.monotonic() - start < 30  # (it never ended)
    (d,) = exc.value.diagnostics
    assert (d.file, d.line, d.column) == (str(inv), 1, 1)
    assert "billion laughs" in d.message and "490,329,076 values" in d.message


@pytest.mark.parametrize("text", [
    _laughs(3),  # 810 strings from 22 written: aliases as people use them
    "all:\n  vars:\n    a: &x [1, {b: &y [2, *x]}, *y]\n  hosts:\n    h: {ansible_connection: netns, ansible_host: x}\n",
])
def test_aliases_that_stand_for_little_and_cycles_load(tmp_path: Path, text: str) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(text)
    assert [h.name for h in load(str(inv)).hosts] == ["h"]


@pytest.mark.parametrize(("text", "where", "message"), [
    ("a: " + "[" * 20000 + "]" * 20000 + "\n", (1, 103), "nested more than 100 levels deep"),
    ("a:" + "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(300)) + " v\n", (101, 201),
     "nested more than 100 levels deep"),
    ("x: &x [1]\ny: *x\na: " + "[" * 300 + "]" * 300 + "\n", (1, 1), "nested 301 levels deep, more than 100"),
], ids=["flow", "block", "with-an-alias"])
def test_a_document_nested_past_any_inventory_is_refused_where_it_goes_too_deep(
        tmp_path: Path, text: str, where: tuple[int, int], message: str) -> None:
    # A list nested 20 000 deep was an internal error (Python's recursion limit) in whatever walked it.
    inv = tmp_path / "inv.yaml"
    inv.write_text(text)
    with pytest.raises(InventoryError) as exc:
        load(str(inv))
    (d,) = exc.value.diagnostics
    assert ((d.line, d.column), d.message) == (where, message)

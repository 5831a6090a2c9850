"""Bad input: every problem at once, each placed at FILE:LINE:COLUMN with its field path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from provisioner import schema
from provisioner.errors import InventoryError
from provisioner.reconcile import load
from provisioner.validate import interface_name_problem

HEAD = "all:\n  hosts:\n    h:\n      ansible_connection: netns\n      network:\n"


def problems(write, body: str) -> list[str]:
    path = write(HEAD + body)
    with pytest.raises(InventoryError) as info:
        load(path)
    return [str(d).removeprefix(path + ":") for d in info.value.diagnostics]


@pytest.mark.parametrize("body, expected", [
    ("        devices:\n          - {name: t0, type: tun, colour: red}\n",
     "7:35: all.hosts.h.network.devices[0].colour: unknown key 'colour'"),
    ("        devices:\n          - {name: t0, type: tunnel}\n",
     '7:30: all.hosts.h.network.devices[0].type: "tunnel" is not one of "tun", "tap"'),
    ("        devices:\n          - {name: t0, type: tun, mtu: big}\n",
     "7:40: all.hosts.h.network.devices[0].mtu: expected integer, got string \"big\""),
    ("        devices:\n          - {name: t0}\n",
     "7:13: all.hosts.h.network.devices[0]: 'type' is a required property"),
    ("        devices:\n          - {name: a-very-long-name0, type: tun}\n",
     "7:20: all.hosts.h.network.devices[0].name: interface name 'a-very-long-name0' is 17 bytes; "
     "the kernel allows at most 15"),
    ("        devices:\n          - {name: t0, type: tun, mac: '02:00:00:00:00:01'}\n",
     "7:40: all.hosts.h.network.devices[0].mac: a tun device has no MAC address (mac is for tap devices)"),
    ("        devices:\n          - {name: t0, type: tap, mac: '03:00:00:00:00:01'}\n",
     "7:40: all.hosts.h.network.devices[0].mac: 03:00:00:00:00:01 is a multicast address; "
     "a device needs a unicast MAC"),
    ("        devices:\n          - {name: t0, type: tap, mac: 'zz'}\n",
     "7:40: all.hosts.h.network.devices[0].mac: 'zz' is not a MAC address (like 02:00:00:00:00:01)"),
    ("        devices:\n          - {name: t0, type: tap, addresses: [300.1.1.1/24]}\n",
     "7:47: all.hosts.h.network.devices[0].addresses[0]: '300.1.1.1/24' is not an ADDRESS/PREFIX"),
    ("        routes:\n          - {to: 10.0.0.1/8, dev: lo}\n",
     "7:18: all.hosts.h.network.routes[0].to: '10.0.0.1/8' is not a network in CIDR form (host bits set)"),
    ("        routes:\n          - {to: 10.0.0.0/8}\n",
     "7:13: all.hosts.h.network.routes[0]: a route needs `via`, `dev` or both"),
    ("        routes:\n          - {to: 10.0.0.0/8, via: 'fd00::1'}\n",
     "7:35: all.hosts.h.network.routes[0].via: gateway fd00::1 is IPv6 but the route is IPv4"),
    ("        routes:\n          - {to: 10.0.0.0/8, dev: lo, table: 255}\n",
     "7:46: all.hosts.h.network.routes[0].table: table 255 (local) belongs to the kernel"),
    ("        devices:\n          - {name: t0, type: tun, state: down}\n        routes:\n"
     "          - {to: 10.0.0.0/8, dev: t0}\n",
     "9:35: all.hosts.h.network.routes[0].dev: device t0 is declared down; the kernel keeps no route on a down device"),
    ("        devices:\n          - {name: t0, type: tap, addresses: [198.51.100.1/24]}\n        routes:\n"
     "          - {to: 192.0.2.0/24, via: 203.0.113.99, dev: t0}\n",
     "9:37: all.hosts.h.network.routes[0].via: gateway 203.0.113.99 is on none of t0's subnets (198.51.100.0/24); "
     "the kernel would refuse the route (ENETUNREACH)"),
    ("        devices:\n          - {name: t0, type: tap, mtuu: 9000}\n",
     "7:35: all.hosts.h.network.devices[0].mtuu: unknown key 'mtuu' (did you mean 'mtu'?)"),
    # A list key holding a mapping: ruamel makes the list a tuple, then hashes it (a TypeError, a
    # traceback until the fuzzer found it: tests/fuzz/crashes/inventory/).
    ("        tunnels:\n        ?  - {name: wan, device: tun0}\n",
     "7:12: a mapping key holds a mapping: a key must be a scalar (Ansible's are names)"),
])
def test_one_problem(write, body: str, expected: str) -> None:
    assert problems(write, body) == [expected]


def test_every_problem_is_reported_at_once(write) -> None:
    found = problems(write, """\
        devices:
          - {name: t0, type: tap, addresses: [198.51.100.1/24]}
          - {name: t1, type: tap, addresses: [198.51.100.1/25], bogus: 1}
          - {name: t1, type: tun}
          - {name: t2, type: tun, addresses: [198.51.100.1/32]}
        routes:
          - {to: 10.0.0.0/8, dev: t0}
          - {to: 10.0.0.0/8, dev: t1}
""")
    assert sorted(found) == sorted([
        "8:65: all.hosts.h.network.devices[1].bogus: unknown key 'bogus'",
        "9:13: all.hosts.h.network.devices[2]: duplicate name 't1' (first at index 1)",
        "10:47: all.hosts.h.network.devices[3].addresses[0]: address 198.51.100.1 is also on device t0",
        "13:13: all.hosts.h.network.routes[1]: duplicate route to 10.0.0.0/8 (first at index 0)",
    ])


def test_a_key_repeated_in_one_list_is_reported_each_time_against_its_first_not_across_layers(write) -> None:
    """Repeats are found while the layers merge (no second pass keying every item again): each
    repeat names the first item's index, and a group's entry that a host's replaces is no repeat."""
    path = write("""\
all:
  vars:
    network:
      devices:
        - {name: t0, type: tap}
  hosts:
    h:
      ansible_connection: netns
      network:
        devices:
          - {name: t0, type: tun}
          - {name: t0, type: tun}
          - {name: t0, type: tun}
""")
    with pytest.raises(InventoryError) as info:
        load(path)
    assert [str(d).removeprefix(path + ":") for d in info.value.diagnostics] == [
        "12:13: all.hosts.h.network.devices[1]: duplicate name 't0' (first at index 0)",
        "13:13: all.hosts.h.network.devices[2]: duplicate name 't0' (first at index 0)",
    ]


def test_yaml_syntax_error_has_a_position(write) -> None:
    path = write("all:\n  hosts:\n    h: {a: 1\n")
    with pytest.raises(InventoryError) as info:
        load(path)
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (4, 1) and "YAML syntax error" in d.message


def test_unsupported_connection(write) -> None:
    path = write("all:\n  hosts:\n    h:\n      ansible_connection: winrm\n")
    with pytest.raises(InventoryError, match="ansible_connection 'winrm' is not supported"):
        load(path)


def test_a_problem_in_a_group_is_reported_once(write) -> None:
    path = write("all:\n  vars:\n    network:\n      routes:\n        - {to: 10.0.0.0/8}\n"
                 "  hosts:\n    a: {ansible_connection: local}\n    b: {ansible_connection: local}\n")
    with pytest.raises(InventoryError) as info:
        load(path)
    assert len(info.value.diagnostics) == 1


@pytest.mark.parametrize("name, ok", [
    ("tap0", True), ("x" * 15, True), ("x" * 16, False), ("é" * 8, False),
    ("a b", False), ("a/b", False), ("a:b", False), (".", False), ("..", False), ("x%d", False), ("%", False),
])
def test_interface_names(name: str, ok: bool) -> None:
    assert (interface_name_problem(name) is None) == ok


def test_a_name_the_kernel_would_read_as_a_template_is_refused(write) -> None:
    """dev_valid_name() lets '%' through, and the kernel then makes a name of its own from it:
    `x%d` became a device x0 that provision could not find again, nor undo (it was left behind)."""
    path = write(HEAD + "        devices:\n          - {name: 'x%d', type: tap}\n")
    with pytest.raises(InventoryError, match=r"interface name 'x%d' contains '%': the kernel would make a name"):
        load(path)


def test_the_characters_an_interface_name_may_not_hold_are_the_kernels_at_every_code_point() -> None:
    # validate._NAME_BAD is one regex search; dev_valid_name() refuses isspace(), '/' and ':'
    import sys

    from provisioner.validate import _NAME_BAD

    assert [c for c in map(chr, range(sys.maxunicode + 1))
            if bool(_NAME_BAD.fullmatch(c)) != (c.isspace() or c in "/:")] == []
    name = "a:b c/\u3000:"
    bad = sorted({c for c in name if c.isspace() or c in "/:"})  # the words as they were
    assert interface_name_problem(name) == f"interface name {name!r} contains {', '.join(repr(c) for c in bad)}"


def test_a_name_passed_by_the_quick_match_is_one_the_full_check_has_nothing_to_say_of() -> None:
    """check_host words only the names validate._NAME_FINE does not pass: every name it passes
    must be one interface_name_problem passes too (each code point alone, and the edges)."""
    import sys

    from provisioner.validate import _NAME_FINE

    names = [chr(c) for c in range(sys.maxunicode + 1)] + [
        "", ".", "..", "...", ".a", "a.", "x" * 15, "x" * 16, "é" * 7, "é" * 8, "a%d", "a b", "a\tb", "a/b", "a:b"]
    passed = [n for n in names if _NAME_FINE(n)]
    assert len(passed) > 80 and "x" * 15 in passed and "..." in passed
    assert [n for n in passed if interface_name_problem(n) is not None] == []


def test_an_old_key_file_tunnel_gets_the_migration_at_its_line(write) -> None:
    """The shared-key form is gone: the error says exactly what to write instead, where it was."""
    body = ("        devices: [{name: tap0, type: tap}]\n"
            "        tunnels:\n"
            "          - {name: lab, device: tap0, connect: '192.0.2.1:40839', key_file: keys/lab.key}\n")
    found = problems(write, body)
    assert ("8:77: all.hosts.h.network.tunnels[0].key_file: tunnel lab: key_file is the old shared-key form. "
            "Tunnels now use WireGuard keys: give each host tunnel_private_key_file (provision keygen PATH writes "
            "one and prints its public key) and tunnel_public_key; to keep the old key as an extra pre-shared key, "
            "rename key_file to psk_file.") in found, found


@pytest.mark.parametrize("inventory", sorted(str(p) for p in Path(__file__).resolve().parents[2].glob(
    "inventories/*.yaml")) + [str(Path(__file__).resolve().parents[2] / "examples/ansible/inventory.yaml")])
def test_the_compiled_schema_agrees_with_jsonschema(inventory) -> None:
    """Valid inventories pass the compiled schema alone (schema.check asks jsonschema only on a rejection)."""
    from provisioner import schema
    from provisioner.source import load_source, parse

    data = parse(load_source(inventory))
    assert schema.is_valid(data) == (not list(schema.validator(schema.INVENTORY).iter_errors(data)))
    assert schema.is_valid(data)


def _outcome(f, *args) -> str:
    """What a parser says of its input: its text, or that it refused it."""
    try:
        return str(f(*args))
    except ValueError:
        return "error"


@pytest.mark.parametrize("text", [
    "10.0.0.0/8", "10.0.0.1/8", "010.0.0.0/8", "10.0.0.0/08", "1.2.3.4/32", "1.2.3.4/33", "256.0.0.0/8",
    "0.0.0.0/0", "1.2.3.4", "\u0663.1.1.1/32", "1.2.3/24", "1.2.3.4.5/32", "1.2.3.4/", "/24", "1.2.3.4/-1",
    "1.2.3.4/ 24", "+1.2.3.4/32", "1.2.3.4/+3", "1..2.3/8", "fd00::/8", "FD00::1/64", "10.0.0.0/255.0.0.0",
    "255.255.255.255/32", "default", "::ffff:192.0.2.1", "1.2.3.04", "0x1.2.3.4", "1.2.3.4 ", "FD00::0:1",
    "1.2.3.4\x00/32", "1.2.3.4/3\x00", "\ud800.1.1.1/8", "1.2.3.4/32/32", "1.2.3.4//32", "1.2.3.4/\uff13\uff12",
])
def test_canonical_forms_are_what_ipaddress_says(text) -> None:
    """The IPv4 fast path of canonical_network/_interface/_address gives ipaddress's answer, or its error."""
    import ipaddress

    from provisioner.model import canonical_address, canonical_interface, canonical_network

    expected_net = "0.0.0.0/0" if text == "default" else _outcome(ipaddress.ip_network, text)
    assert _outcome(canonical_network, text) == expected_net
    assert _outcome(canonical_interface, text) == _outcome(ipaddress.ip_interface, text)
    address = text.partition("/")[0]
    assert _outcome(canonical_address, address) == _outcome(ipaddress.ip_address, address)


def test_canonical_forms_of_random_near_addresses_are_what_ipaddress_says() -> None:
    """The same on 20 000 strings made of the pieces of IPv4 addresses and prefixes, most of them
    nearly one: the fast path must never say yes where ipaddress says otherwise."""
    import ipaddress
    import random

    from provisioner.model import canonical_address, canonical_interface, canonical_network

    rng = random.Random(16)
    pieces = ["0", "1", "9", "10", "25", "255", "256", "01", "00", "300", "1000", "", " ", "+1", "-1", "a", "\u0661",
              "\x00"]

    for _ in range(20_000):
        octets = [rng.choice(pieces) for _ in range(rng.choice((3, 4, 4, 4, 5)))]
        text = ".".join(octets) + rng.choice(["/" + rng.choice(pieces + ["32", "33", "24", "8"]), "", "/", "//8"])
        assert _outcome(canonical_network, text) == _outcome(ipaddress.ip_network, text), text
        assert _outcome(canonical_interface, text) == _outcome(ipaddress.ip_interface, text), text
        address = text.partition("/")[0]
        assert _outcome(canonical_address, address) == _outcome(ipaddress.ip_address, address), address


@pytest.mark.parametrize("name, words", [
    ("..", "host name '..' is not allowed"), (".", "host name '.' is not allowed"),
    ("a/../../b", "contains '/'"), ("-rf", "starts with '-'"), (".hidden", "starts with '.'"),
    ("tab\there", "contains '\\t'"), ("x" * 201, "201 bytes; at most 200"),
])
def test_host_names_that_are_not_file_names_are_refused(write, name: str, words: str) -> None:
    """Issue 14, defect 7: a host named `..` validated and mapped its tunnel state onto the
    state directory itself."""
    quoted = json.dumps(name)  # a YAML double-quoted scalar
    path = write(f"all:\n  hosts:\n    {quoted}:\n      ansible_connection: netns\n")
    with pytest.raises(InventoryError) as info:
        load(path)
    assert any(words in str(d) for d in info.value.diagnostics), info.value


def test_the_compiled_schema_leaves_the_data_as_written() -> None:
    """fastjsonschema fills in `default`s unless told not to: the inventory a user asks to see
    (`provision inventory --host`) and the data the cache keeps must be what was written."""
    from provisioner import schema

    data = {"all": {"hosts": {"h": {"network": {"routes": [{"to": "192.0.2.0/24", "dev": "t0"}]}}}}}
    before = json.loads(json.dumps(data))
    assert schema.is_valid(data)
    assert data == before


@pytest.mark.parametrize("name", sorted(schema.GENERATED))
def test_the_generated_validators_are_todays_schema(name: str) -> None:
    module, entry = schema.GENERATED[name]
    written = (Path(schema.__file__).parent / "compiled_schemas" / f"{module}.py").read_text()
    assert written == schema.generate(module), f"schemas/ changed: run `make validators` ({module}.py is stale)"
    check = schema.compiled(name)
    assert check.__module__ == f"provisioner.compiled_schemas.{module}", "the generated code is used"
    assert check is getattr(sys.modules[check.__module__], entry)


def test_a_generated_validator_of_another_schema_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    schema.compiled.cache_clear()
    monkeypatch.setattr(schema, "digest", lambda file: "not the schema it was made from")
    try:
        check = schema.compiled(schema.INVENTORY)
        assert check.__module__ != "provisioner.compiled_schemas.inventory"
        assert not schema.is_valid({"all": {"hosts": {"h": {"network": {"devices": [{"name": "t", "type": "x"}]}}}}})
    finally:
        schema.compiled.cache_clear()


ITEM_FORMS = [
    ("devices", {"name": "t0", "type": "tap", "addresses": ["192.0.2.1/24"]}), ("devices", {"name": "t0"}),
    ("devices", {"name": "t0", "type": "tap", "mac": "02:00:00:00:00:01"}),
    ("devices", {"name": "t0", "type": "tap", "mac": "02:00:00:00:00"}), ("devices", {"name": "", "type": "tun"}),
    ("devices", {"name": "t0", "type": "tap", "mtu": 12}), ("devices", {"name": "t0", "type": "tap", "colour": 1}),
    ("routes", {"to": "192.0.2.0/24", "dev": "t0"}), ("routes", {"to": "192.0.2.0/24", "metric": -1}),
    ("routes", {"dev": "t0"}), ("routes", {"to": 5}), ("routes", ["not", "a", "mapping"]),
    ("tunnels", {"name": "wan", "device": "t0", "peer": "b", "port": 5000}),
    ("tunnels", {"name": "wan", "device": "t0", "connect": "192.0.2.1:5000", "public_key": "x" * 43 + "="}),
    ("tunnels", {"name": "wan", "device": "t0", "connect": "192.0.2.1:5000",
                 "public_key": "A" * 42 + "A="}),
    ("tunnels", {"name": "wan", "device": "t0", "transport": "sctp"}),
]


@pytest.mark.parametrize("key, item", ITEM_FORMS, ids=lambda v: str(v)[:40])
def test_an_item_is_judged_alone_as_its_list_judges_it(key: str, item: object) -> None:
    """reparse.py judges the items an edit put in place by their list's item schema alone (a
    module a fifth the size of the whole one, patterns compiled at first use): the same verdict as
    the network schema, and as jsonschema, gives."""
    alone = schema.is_valid(item, schema.ITEMS[key])
    assert alone == schema.is_valid({key: [item]}, schema.NETWORK)
    assert alone == (not list(schema.validator(schema.NETWORK).iter_errors({key: [item]})))
    assert schema.compiled(schema.ITEMS[key]).__module__ == f"provisioner.compiled_schemas.{key}_item"


DEVICE_FORMS = [{"name": "t"}, {"name": "t", "type": "tap"}, {"name": "t", "state": "absent"},
                {"name": "t", "state": "up"}, {"name": "t", "state": "down", "type": "tun"},
                {"name": "t", "state": "absent", "type": "tap"}, {"name": "t", "state": "gone"},
                {"name": "t", "type": "tap", "state": None}]


@pytest.mark.parametrize("device", DEVICE_FORMS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_the_compiled_if_else_is_the_anyof_it_means(device: dict) -> None:
    # `type` is required unless `state: absent` (an `if`/`else` in the schema): the compiled code
    # says it as `anyOf` (schema._if_else), which must pass and refuse exactly what jsonschema does.
    data = {"devices": [device]}
    assert schema.is_valid(data, schema.NETWORK) == (not list(schema.validator(schema.NETWORK).iter_errors(data)))


def test_a_valid_device_costs_the_compiled_code_no_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    # fastjsonschema's `if` raised (and formatted) an exception for every device without
    # `state: absent`: 35 of the 40 ms that 1000 devices took to validate.
    from provisioner.compiled_schemas import inventory as generated

    made: list[str] = []
    original = generated.JsonSchemaValueException.__init__

    def counted(self, message, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(message)
        original(self, message, *args, **kwargs)

    monkeypatch.setattr(generated.JsonSchemaValueException, "__init__", counted)
    assert schema.is_valid({"devices": [{"name": f"t{i}", "type": "tap"} for i in range(10)]}, schema.NETWORK)
    assert made == []


def test_only_schemas_are_said_as_anyof() -> None:
    # A property may be named `if` or `else`, and data may hold such keys: neither is a schema.
    node = {"properties": {"if": {"type": "string"}, "else": {"type": "string"}},
            "const": {"if": 1, "else": 2},
            "items": {"if": {"required": ["a"]}, "else": {"required": ["b"]}}}
    assert schema._if_else(node) == {
        "properties": {"if": {"type": "string"}, "else": {"type": "string"}},
        "const": {"if": 1, "else": 2},
        "items": {"anyOf": [{"required": ["b"]}, {"required": ["a"]}]}}


@pytest.mark.parametrize("name", ["../../tmp/fifo", "/dev/watchdog", "a/b", "..", "x" * 256])
def test_a_netns_host_s_namespace_name_is_a_file_name_in_run_netns(write, name: str) -> None:
    """A namespace is reached by opening /run/netns/NAME as root: a name with `/` or `..` had root
    open any file (a FIFO, a device), found in review. Refused where it is written."""
    path = write("all:\n  hosts:\n    h:\n      ansible_connection: netns\n"
                 f"      ansible_host: {json.dumps(name)}\n")
    with pytest.raises(InventoryError) as info:
        load(path)
    (d,) = info.value.diagnostics
    assert d.line == 5 and "ansible_host" in str(d), d
    assert "is not a network namespace's name" in d.message or "at most 255 bytes" in d.message, d

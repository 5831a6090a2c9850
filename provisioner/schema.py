"""JSON Schema validation against the files in `schemas/`, the source of truth for formats.

Two validators, one schema. A valid document (the usual case) is passed by fastjsonschema's
code for the schema: 0.005 s for 1000 devices and routes, where jsonschema took 0.15 s to build
its validator, 0.25-0.45 s to walk the document and 0.27 s to import. That code is generated
ahead, into `provisioner/compiled_schemas/` (`make validators`; a test fails when it is not the
code of today's schema), because compiling it cost every cold load 0.05 s and importing
fastjsonschema 0.01 s. Each generated module names the SHA-256 of the schema it was made from:
one that does not match (an edited schema, a checkout without `make validators`) is not used,
and the schema is compiled in the process as before. Only a document that the fast code
rejects (or that makes it stumble) goes to jsonschema, which lists every problem with a
message; if jsonschema finds none, it has the last word.

jsonschema reports an unknown key as one error on the parent object; a person wants it
on the key's own line, so those are split per key. Every error is collected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path as FsPath

from .errors import Diagnostic
from .fingerprint import hasher
from .hints import Any
from .source import Source

INVENTORY = "inventory.schema.json"
PLAN = "plan.schema.json"
VARS = "inventory.schema.json#/$defs/vars"  # a group_vars/ or host_vars/ file: one mapping of variables
NETWORK = "inventory.schema.json#/$defs/network"  # a host's `network` (reparse.py judges items by it)


@cache
def schema_dir() -> FsPath:
    """Installed wheels carry the schemas inside the package; a checkout has them at the top."""
    here = FsPath(__file__).resolve().parent
    for candidate in (here / "schemas", here.parent / "schemas"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("schemas/ not found beside the provisioner package")


@cache
def schema_bytes(name: str) -> bytes:
    """A schema file as read once in a process: the cache's key (cache._judges), the document
    (load_schema) and the check of a generated validator (digest) each need the inventory's,
    and a one-change apply asked for it three times (0.4 ms of the 0.8 ms to judge one item)."""
    return (schema_dir() / name).read_bytes()


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(schema_bytes(name))


def document(name: str) -> dict[str, Any]:
    """`FILE#/$defs/X`: the definition X of FILE, as the schema of a whole document (its `$id`
    kept, so references by absolute URI still resolve)."""
    file, _, pointer = name.partition("#")
    schema = load_schema(file)
    if not pointer:
        return schema
    whole = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#" + pointer}
    return {"$id": schema["$id"], **whole} if "$id" in schema else whole


@cache
def validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(document(name))


# Each list of a network judged alone (reparse.py: the items an edit put in place), by the schema of
# its items: a module of its own, a fifth of the whole one to import (0.2 ms against 1 ms).
ITEMS = {key: f"{INVENTORY}#/$defs/network/properties/{key}/items" for key in ("devices", "routes", "tunnels")}

# Where compiled() finds each schema's generated code: the module, and in it the function
# fastjsonschema made for that schema. SOURCES: the document each module is made from; a
# definition of the same file that the module also holds has a function of its own there.
SOURCES = {"inventory": INVENTORY, **{f"{key}_item": name for key, name in ITEMS.items()}}
GENERATED = {INVENTORY: ("inventory", "validate"), VARS: ("inventory", "validate_vars"),
             NETWORK: ("inventory", "validate_network"),
             **{name: (f"{key}_item", "validate") for key, name in ITEMS.items()}}


def digest(file: str) -> str:
    """Of the schema file's bytes: what a generated module was made from."""
    return hasher(schema_bytes(file)).hexdigest()


def _fresh(name: str) -> dict[str, Any]:
    """A copy of the document for fastjsonschema, which writes into the schema it is given, with
    each `if` that has an `else` and no `then` said as the `anyOf` it means (`_if_else`)."""
    return _if_else(json.loads(json.dumps(document(name))))


def _if_else(node: Any) -> Any:
    """`if: A, else: E` (no `then`) holds when A does or E does: `anyOf: [E, A]`. The same verdict,
    but fastjsonschema's code for `if` raises and catches an exception, with its message made,
    whenever A fails, and A failed for every device without `state: absent`: 1000 exceptions,
    35 ms of a 40 ms validation of 1000 devices. Its `anyOf` tries E first and stops there.
    (jsonschema, which words the errors, still reads the schema as written.) Only schemas are
    rewritten: not the names under `properties` and the like, nor data (`const`, `enum`, ...)."""
    if isinstance(node, list):
        return [_if_else(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: v if k in _DATA else {n: _if_else(s) for n, s in v.items()} if k in _NAMED and isinstance(v, dict)
           else _if_else(v) for k, v in node.items()}
    if "if" in out and "else" in out and "then" not in out:
        either = {"anyOf": [out.pop("else"), out.pop("if")]}
        if "anyOf" in out:
            out["allOf"] = [*out.get("allOf", []), either]
        else:
            out.update(either)
    return out


_NAMED = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})  # name -> schema
_DATA = frozenset({"const", "enum", "default", "examples"})  # values, not schemas


@cache
def compiled(name: str) -> Callable[[Any], Any]:
    """The schema as a Python function that raises on the first problem: the generated one if it
    was made from this very schema, else compiled here."""
    if name in GENERATED:
        from importlib import import_module

        module, entry = GENERATED[name]
        try:
            code = import_module(f"{__package__}.compiled_schemas.{module}")
        except ImportError:
            code = None
        if code is not None and getattr(code, "SCHEMA_DIGEST", None) == digest(name.partition("#")[0]):
            return getattr(code, entry)
    import fastjsonschema

    return fastjsonschema.compile(_fresh(name), use_default=False)  # it would write defaults into the data


def generate(module: str) -> str:
    """The module `compiled()` prefers for the schemas GENERATED finds in `module`: fastjsonschema's
    code for its document (SOURCES), with its two exception classes defined in place (importing
    fastjsonschema for them cost 0.01 s), each pattern compiled when first used, and a name for
    each entry GENERATED gives it."""
    import fastjsonschema

    source = SOURCES[module]
    file = source.partition("#")[0]
    code = fastjsonschema.compile_to_code(_fresh(source), use_default=False)
    imported = "from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException\n"
    if imported not in code:
        raise RuntimeError("fastjsonschema's generated code changed its imports: update schema.generate")
    head = (f'"""Generated from schemas/{file} by `make validators` (provisioner/schema.py): do not edit."""\n'
            f"# ruff: noqa\nSCHEMA_DIGEST = {digest(file)!r}\n")
    mine = ("class JsonSchemaValueException(ValueError):\n"
            "    def __init__(self, message, value=None, name=None, definition=None, rule=None):\n"
            "        super().__init__(message)\n"
            "        self.message, self.value, self.name, self.definition, self.rule = message, value, name, "
            "definition, rule\n\n\n"
            "JsonSchemaValuesException = JsonSchemaValueException\n")
    # The data is parsed YAML or JSON, which never holds a Decimal: the isinstance checks that
    # fastjsonschema writes for numbers need no import of decimal (5 ms of a one-change apply).
    code = code.replace("from decimal import Decimal\n", "class Decimal:  # never in the data\n    pass\n")
    code = _lazy_patterns(code)
    root = re.search(r"^def (validate_\w+)\(", code, re.M)
    if root is None:
        raise RuntimeError("no validate function in fastjsonschema's generated code")
    names = []
    for name, (where, entry) in GENERATED.items():
        if where != module:
            continue
        function = root[1] if name == source else root[1] + re.sub(r"[^A-Za-z0-9_]", "_", "#" + name.partition("#")[2])
        if not re.search(rf"^def {function}\(", code, re.M):
            raise RuntimeError(f"fastjsonschema made no function {function} for {name}: update schema.generate")
        names.append(f"{entry} = {function}\n")
    return head + code.replace(imported, mine) + "\n\n" + "".join(names)


def _lazy_patterns(code: str) -> str:
    """fastjsonschema compiles every pattern of the schema as its module is imported: 0.25-0.35 ms
    (re's compiler is Python), most of it for patterns a run never meets (a MAC, a public key).
    Here each is compiled at its first lookup, by the dict's __missing__: a lookup after that is
    the dict's own, in C."""
    table = re.search(r"^REGEX_PATTERNS = \{\n(.*?)^\}\n", code, re.M | re.S)
    if table is None:
        if "REGEX_PATTERNS" in code:
            raise RuntimeError("fastjsonschema's patterns changed their form: update schema._lazy_patterns")
        return code
    entries = re.findall(r"^    ('(?:[^'\\]|\\.)*'): re\.compile\(('(?:[^'\\]|\\.)*')\),?$", table[1], re.M)
    if len(entries) != table[1].count("\n"):
        raise RuntimeError("fastjsonschema's patterns changed their form: update schema._lazy_patterns")
    lazy = ("class _Patterns(dict):\n"
            "    def __missing__(self, pattern):\n"
            "        self[pattern] = compiled = re.compile(_PATTERN_SOURCES[pattern])\n"
            "        return compiled\n\n\n"
            "_PATTERN_SOURCES = {\n" + "".join(f"    {key}: {source},\n" for key, source in entries) + "}\n"
            "REGEX_PATTERNS = _Patterns()\n")
    return code[:table.start()] + lazy + code[table.end():]


def write_generated() -> None:
    """`make validators`: (re)write compiled_schemas/ from schemas/."""
    out = FsPath(__file__).resolve().parent / "compiled_schemas"
    out.mkdir(exist_ok=True)
    (out / "__init__.py").write_text('"""fastjsonschema\'s code for schemas/, made by `make validators`."""\n')
    for module in SOURCES:
        (out / f"{module}.py").write_text(generate(module))


def is_valid(data: Any, name: str = INVENTORY) -> bool:
    try:
        compiled(name)(data)
        return True
    except Exception:  # a rejection, or data it cannot handle (keys that are not text): ask jsonschema
        return False


# What a schema on the way from a document's root to a network's list may say, for an item of
# that list to be judged alone: nothing that looks at more than one value at a time.
_ON_THE_WAY = frozenset({"$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties",
                         "additionalProperties", "required"})
_A_LIST = frozenset({"description", "type", "items"})


def network_list_at(name: str, path: list[Any]) -> str | None:
    """`devices`, `routes` or `tunnels` when the list at `path` in a document of schema `name` is
    that list of a network (NETWORK), reached through properties and references alone; else None."""
    if not path:
        return None
    root = load_schema(name.partition("#")[0])
    node: Any = document(name)
    for part in path[:-1]:
        node = _resolved(root, node)
        if node is None or not isinstance(part, str) or set(node) - _ON_THE_WAY:
            return None
        properties = node.get("properties", {})
        node = properties[part] if part in properties else node.get("additionalProperties")
    network = _resolved(root, node)
    key = path[-1]
    if network is not root["$defs"]["network"] or set(network) - _ON_THE_WAY or key not in network["properties"]:
        return None
    return key if set(network["properties"][key]) <= _A_LIST else None


def _resolved(root: dict[str, Any], node: Any) -> dict[str, Any] | None:
    """`node` with its `$ref` (to a definition of `root`) followed, when that is all it says."""
    if not isinstance(node, dict):
        return None
    ref = node.get("$ref")
    if ref is None:
        return node
    prefix = root.get("$id", "") + "#/$defs/"
    for start in (prefix, "#/$defs/"):
        if isinstance(ref, str) and ref.startswith(start) and set(node) <= {"$ref", "description", "$defs", "$schema",
                                                                              "$id"}:
            return root["$defs"].get(ref[len(start):])
    return None


def item_is_valid(name: str, path: list[Any], item: Any) -> bool:
    """Whether `item`, put in the list at `path` of a valid document of schema `name`, leaves it
    valid; False also when that cannot be told from the item alone (see network_list_at)."""
    key = network_list_at(name, path)
    return key is not None and is_valid(item, ITEMS[key])


def check(source: Source, data: Any, name: str = INVENTORY) -> list[Diagnostic]:
    if is_valid(data, name):
        return []
    out: list[Diagnostic] = []
    for error in validator(name).iter_errors(data):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in known:
                    out.append(source.diagnostic(path + (key,), f"unknown key {key!r}{_did_you_mean(key, known)}",
                                                 at_key=True))
            continue
        out.append(source.diagnostic(path, _message(error)))
    return sorted(out, key=lambda d: (d.line or 0, d.column or 0, d.message))


def _did_you_mean(key: object, known: set[str]) -> str:
    """As Terraform and git suggest the closest known name for a typo."""
    import difflib

    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
              bool: "boolean", type(None): "null"}


def _message(error: Any) -> str:
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value)
        return f"{json.dumps(error.instance, default=str)} is not one of {allowed}"
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        got = JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        shown = "" if error.instance is None else " " + json.dumps(error.instance, default=str)
        return f"expected {wanted}, got {got}{shown}"
    if error.validator == "pattern" and error.absolute_path and error.absolute_path[-1] == "mac":
        return f"{error.instance!r} is not a MAC address (like 02:00:00:00:00:01)"
    if error.validator == "pattern" and error.absolute_path and error.absolute_path[-1] in PUBLIC_KEYS:
        return (f"{error.instance!r} is not a public key (32 bytes in base64, as `provision keygen` or "
                "`wg pubkey` prints it)")
    return error.message


PUBLIC_KEYS = ("public_key", "tunnel_public_key")


if __name__ == "__main__":
    write_generated()

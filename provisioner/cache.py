"""A cache of validated inventories, so an unchanged inventory is not parsed and judged again.

Parsing, the schema and the checks that need only the inventory (check_host, check_peers)
cost 0.4-0.7 s for 1000 devices and routes, most of a no-op plan. Their verdict depends only
on the text of the files read and on the code that judged them, so an entry is keyed by a
hash of both (BLAKE2b, fingerprint.py): the bytes of every file the load read, the modules
and schema that decide what is valid, and the YAML and schema libraries' own version files.
Another checkout, an upgrade or an edited file is another key, never a stale verdict. Only a
load that found no problem at all (not even a warning) is kept; what is looked up from the
machine (key files, users) is never cached.

A cache file is input like any other: it is JSON (never pickle), read only from a directory
and file of this user that nobody else can write, and used only if its header names the
same format and key and the checksum of its data matches. Anything else is a miss and is
written again. Deleting the directory is always safe. The checksum is a CRC-32, against a
file cut short or damaged: whoever could write a forged entry could write any hash of it as
well, so a cryptographic one would buy nothing, and hashing a 1000-device inventory's kept
parse (230 KB) with BLAKE2b took 0.35 ms of a one-change apply, where CRC-32 takes 0.05.

A verdict names each file's data (`put_verdict`). The data of a file whose parse reparse.py
keeps in `parses/` is not copied: the verdict refers to that kept parse, by its key and the id
it was written with, and lists the items an edit put in place since. Copying it was the
largest write of a one-change apply (98 KB of JSON for 1000 devices, 1.2 ms to make), of
data that is mostly what the kept parse holds already; a no-op plan then reads two entries
instead of one (0.4% more of its instructions), and not the kept parse's text, which stands
beside its data rather than in it (`put`'s `text`). A reference whose kept parse is gone,
rewritten (another id) or does not hold the lists its items go into is a miss, like any other
entry that is not as written.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from zlib import crc32

from .files import FileError, atomic_write, parse_json
from .fingerprint import hasher
from .hints import Any

FORMAT = 5  # 5: a text beside the data; 4: verdicts refer to kept parses; 3: CRC-32; 2: BLAKE2b; 1: SHA-256
HEX = "0123456789abcdef"  # what a key is written in (slot: a hex digest)
KEEP = 16  # entries kept; the oldest beyond this are removed when one is written
JUDGES = ("inventory.py", "loader.py", "source.py", "ini.py", "hostpattern.py", "schema.py", "validate.py",
          "model.py", "cache.py", "reparse.py", "recheck.py")  # modules that decide validity, with schema.py's generated ones
LIBRARIES = (("ruamel.yaml", "__init__.py"), ("fastjsonschema", "version.py"))  # hold the version
PARSES = "parses"  # where reparse.py keeps the last parse of each outline: apart, so neither crowds the other out

# A verdict's reference to a kept parse: [key of the kept parse, its id, [[path of a list, index,
# item], ...]], the items an edit put in place since it was kept.
Reference = list[Any]


@dataclass(frozen=True)
class Slot:
    """Where the entry for one set of inputs lives (or would live)."""

    directory: Path
    key: str

    @property
    def path(self) -> Path:
        return self.directory / f"{self.key}.json"


def slot(directory: Path, inputs: Iterable[str]) -> Slot:
    """`inputs`: the text of every file the load read, in the order read (a loader that reads
    several files gives their names and its directory listings too)."""
    h = hasher(_judges())
    for text in inputs:
        data = text.encode()
        h.update(len(data).to_bytes(8, "little") + data)
    return Slot(directory, h.hexdigest())


@cache
def _judges() -> bytes:
    """A digest of the code and schema that decide what is valid: computed once per process."""
    from .schema import INVENTORY, SOURCES, schema_bytes

    h = hasher(f"format {FORMAT}".encode())
    here = Path(__file__).resolve().parent
    files = [here / name for name in JUDGES] + [here / "compiled_schemas" / f"{module}.py" for module in SOURCES]
    for module, name in LIBRARIES:
        spec = find_spec(module)
        if spec is not None and spec.origin:
            files.append(Path(spec.origin).parent / name)
    for f in files:
        try:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        except OSError:
            h.update(f.name.encode() + b"\0missing")
    try:  # the bytes the validators will read
        h.update(INVENTORY.encode() + b"\0" + schema_bytes(INVENTORY))
    except OSError:
        h.update(INVENTORY.encode() + b"\0missing")
    return h.digest()


def get(s: Slot) -> Any | None:
    """The data kept under the slot's key, or None (missing, or not to be trusted); not the
    text kept beside it, if any (get_with_text)."""
    body = _body(s)
    try:
        return None if body is None else parse_json(body.partition(b"\n")[0])
    except ValueError:
        return None


def get_with_text(s: Slot) -> tuple[Any, str] | None:
    """The data kept under the slot's key and the text put beside it, or None."""
    body = _body(s)
    if body is None:
        return None
    data, _, text = body.partition(b"\n")
    try:
        return parse_json(data), text.decode()
    except ValueError:  # UnicodeDecodeError included
        return None


def _body(s: Slot) -> bytes | None:
    """An entry's body, if the entry is ours as written: a regular file only we could write, in
    the current format, under its key, its checksum holding. The directory is looked at before
    the file is opened, and the file opened without waiting: a FIFO put at an entry's name, in a
    directory others could write, held a run in open() before either was refused."""
    if not _private(s):
        return None
    try:
        fd = os.open(s.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022 or st.st_uid != os.geteuid():
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            head, _, body = f.read().partition(b"\n")
        header = parse_json(head)
        if (not isinstance(header, dict) or header.get("format") != FORMAT or header.get("key") != s.key
                or header.get("crc32") != crc32(body)):
            return None
        return body
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def put(s: Slot, data: Any, exact: bool = False, text: str | None = None) -> bool:
    """Keep `data` (plain JSON values) under the slot's key, and say whether it was; best effort:
    a cache that cannot be written costs time, never a run. Data that would not come back
    unchanged from JSON (keys that are not strings, dates, tuples: json.dumps turns them into
    text or lists without a word) is not kept. Loading the text back and comparing, both in C, costs half of a walk in Python
    checking each value's type (2 ms against 5 ms for a 1000-device inventory's parse); `exact`:
    the caller knows the data is made of JSON's own types alone (reparse.Reparser.exact), and
    that check is not made. `text` is kept beside the data, after the JSON's one line, as it is:
    not as a JSON string, which a reader that needs only the data would have to parse too."""
    try:
        # no check_circular: its bookkeeping is a third of the dump, and a cycle still ends in RecursionError
        body = json.dumps(data, separators=(",", ":"), allow_nan=False, check_circular=False).encode()
        if not exact and json.loads(body) != data:  # a number key became text, a tuple a list, ...
            return False
        if text is not None:
            body += b"\n" + text.encode()  # JSON as dumped here has no line break
    except (TypeError, ValueError, RecursionError):  # ValueError: UnicodeEncodeError too
        return False
    header = json.dumps({"format": FORMAT, "key": s.key, "crc32": crc32(body)}).encode()
    try:
        s.directory.mkdir(mode=0o700, exist_ok=True)
        if not _private(s):
            return False
        atomic_write(s.path, header + b"\n" + body, durable=False)
        _trim(s.directory, s.path)
    except (OSError, FileError):
        return False
    return True


def put_verdict(s: Slot, files: dict[str, Any], kept: dict[str, Reference], exact: bool = False) -> None:
    """Keep the data of each file a clean load read (`files`), but where `kept` gives a reference
    to the file's kept parse; `exact` as put's, for `files`' data and the references' items."""
    put(s, {"files": {f: data for f, data in files.items() if f not in kept}, "kept": kept}, exact)


def get_verdict(s: Slot) -> dict[str, Any] | None:
    """The data of each file a verdict names, its references followed; None for a miss."""
    entry = get(s)
    if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict) or not isinstance(entry.get("kept"), dict):
        return None
    files = entry["files"]
    for file, reference in entry["kept"].items():
        data = _followed(s.directory / PARSES, reference)
        if data is None:
            return None
        files[file] = data
    return files


def _followed(directory: Path, reference: Any) -> Any | None:
    """The kept parse's data with the reference's items in place, or None. The key is checked to
    be a key (64 hexadecimal digits, as slot makes): it names a file, and must name none elsewhere."""
    try:
        key, ident, edits = reference
        if not isinstance(key, str) or len(key) != 64 or key.strip(HEX) or not isinstance(edits, list):
            return None
        kept = get(Slot(directory, key))
        if not isinstance(kept, dict) or not isinstance(ident, str) or kept.get("id") != ident:
            return None
        data = kept.get("data")
        for path, index, item in edits:
            sequence = at(data, path) if isinstance(path, list) else None
            if not isinstance(sequence, list) or type(index) is not int or not 0 <= index < len(sequence):
                return None
            sequence[index] = item
    except (TypeError, ValueError):  # not three things to unpack, a path not in the data
        return None
    return data


def at(data: Any, path: list[Any]) -> Any:
    """What `path` (keys and indexes, from JSON: checked) leads to in `data`; ValueError if nothing."""
    for part in path:
        if isinstance(part, str) and isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(part, int) and not isinstance(part, bool) and isinstance(data, list) and 0 <= part < len(data):
            data = data[part]
        else:
            raise ValueError("not in the data")
    return data


def _private(s: Slot) -> bool:
    try:
        st = os.lstat(s.directory)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o022 and st.st_uid == os.geteuid()


def _trim(directory: Path, written: Path) -> None:
    """The newest KEEP entries stay, and always the one just `written` (a file system's clock
    may give a burst of writes one mtime). By scandir, not a glob: a glob compiles a pattern,
    half a millisecond of every run that writes an entry."""
    with os.scandir(directory) as found:
        entries = [(e.stat(follow_symlinks=False).st_mtime_ns, e.path) for e in found
                   if e.name.endswith(".json") and e.name != written.name]
    for _, old in sorted(entries, reverse=True)[KEEP - 1:]:
        try:
            os.unlink(old)
        except FileNotFoundError:
            pass

"""Every example in every document runs as written (issue 13, item 9).

Each document's examples run in order, as one shell session, in a fresh directory:
- a ```sh block runs (`set -e`: any failing command fails the test);
- a block after `<!-- file: NAME -->` is written to NAME first;
- a block after `<!-- output -->` must be exactly what the sh block before it printed;
- a ```yaml block with neither is a whole inventory, which `provision validate` must accept;
- a block after `<!-- not run: REASON -->` is skipped, and the reason says what tests it instead.
The session has its own mount namespace with a private /run/netns, so the namespaces the
examples make (`ip netns add gw1`) are seen by no one else, and are removed at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\s*$")
NOTE = re.compile(r"^\s*<!--\s*(?P<what>file|output|not run)\s*:?\s*(?P<arg>.*?)\s*-->\s*$")


@dataclass
class Block:
    line: int
    lang: str
    text: str
    note: str = ""  # file | output | not run
    arg: str = ""


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = len(m.group("indent")), i
        note = NOTE.match(lines[i - 1]) if i > 0 else None
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][indent:])
            i += 1
        i += 1
        out.append(Block(start + 1, m.group("lang"), "\n".join(body) + "\n",
                         note.group("what") if note else "", note.group("arg") if note else ""))
    return out


CLEANUP = """
cleanup() {
    for ns in $(ip netns list | cut -d' ' -f1); do
        ip netns pids "$ns" | xargs -r kill -9
        ip netns del "$ns"
    done
}
trap cleanup EXIT
"""


def script(path: Path, out_dir: Path) -> str:
    """One shell session for the document: each example, its stdout kept apart to compare."""
    parts = ["set -e", CLEANUP]
    for n, b in enumerate(blocks(path)):
        where = f"{path.name}:{b.line}"
        if b.note == "not run":
            assert b.arg, f"{where}: a block not run must say why"
            continue
        if b.note == "file":
            parts.append(f"cat > {b.arg} <<'PROVISION_EXAMPLE_EOF'\n{b.text}PROVISION_EXAMPLE_EOF")
        elif b.note == "output":
            (out_dir / f"expected-{n}").write_text(b.text)
        elif b.lang == "sh":
            parts.append(f"echo '### {where}' >&2\n{{\n{b.text}}} > {out_dir}/out-{n}")
        elif b.lang == "yaml":
            parts.append(f"cat > example-{n}.yaml <<'PROVISION_EXAMPLE_EOF'\n{b.text}PROVISION_EXAMPLE_EOF\n"
                         f"echo '### {where}' >&2\nprovision validate example-{n}.yaml > /dev/null")
    return "\n".join(parts) + "\n"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_example_runs_as_written(document: Path, tmp_path: Path) -> None:
    work, out_dir = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out_dir.mkdir()
    (tmp_path / "state").mkdir(mode=0o700)
    text = script(document, out_dir)
    (tmp_path / "examples.sh").write_text(text)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PROVISION_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}
    env.pop("SSH_CONNECTION", None)
    private_netns = f"mkdir -p /run/netns && mount -t tmpfs none /run/netns && exec bash {tmp_path / 'examples.sh'}"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", private_netns],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    last = [line for line in done.stderr.splitlines() if line.startswith("### ")][-1:] or ["(before any)"]
    assert done.returncode == 0, f"the example at {last[0][4:]} failed:\n{done.stderr[-3000:]}"
    for expected in sorted(out_dir.glob("expected-*")):
        n = int(expected.name.split("-")[1])
        before = max(int(p.name.split("-")[1]) for p in out_dir.glob("out-*") if int(p.name.split("-")[1]) < n)
        assert (out_dir / f"out-{before}").read_text() == expected.read_text(), f"{document.name}: output differs"


def test_the_parser_sees_notes_and_fences(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- file: a.yaml -->\n```yaml\nx: 1\n```\n\n<!-- not run: because -->\n```sh\nfalse\n```\n"
                   "  ```sh\n  echo hi\n  ```\n")
    got = [(b.lang, b.note, b.arg, b.text) for b in blocks(doc)]
    assert got == [("yaml", "file", "a.yaml", "x: 1\n"), ("sh", "not run", "because", "false\n"),
                   ("sh", "", "", "echo hi\n")]

"""The command line is read by a parser of the one command it names (cli.command_of): it must
answer exactly as the parser of every command does, for what it accepts and what it refuses."""

from __future__ import annotations

import argparse
import io

import pytest

from provisioner import cli
from provisioner.hints import Any

ARGVS = [
    ["plan", "inv.yaml"],
    ["-v", "plan", "inv.yaml", "--detailed-exitcode", "-l", "gw1,!gw2"],
    ["-vv", "--color", "never", "apply", "inv.yaml", "--force", "--diff", "--forks", "4", "-v"],
    ["--color=always", "destroy", "inv.yaml", "--take-over", "--owner", "site"],
    ["--verbose", "validate", "inv.yaml", "--facts", "a.json", "--facts", "b"],
    ["apply", "saved.plan.json", "--confirm-timeout", "30", "--lock-timeout", "5"],
    ["plan", "inv.yaml", "--format", "markdown", "--out", "p.json", "-c", "netns"],
    ["status", "--json"],
    ["inventory", "inv.yaml", "--host", "gw1", "--yaml"],
    ["graph", "inv.yaml", "--format", "mermaid"],
    ["facts", "--json"],
    ["pull", "repo.git", "--interval", "30", "--netns", "ns1", "--min-commit", "abc"],
    ["confirm", "--state-dir", "/tmp/x"],
    ["completion", "bash"],
    ["keygen", "k.key", "--public-file", "k.pub"],
    ["--color", "plan", "apply", "inv.yaml"],  # --color's value is not the command
    # refused: each must be refused the same way
    ["plan"],
    ["plan", "inv.yaml", "--format", "pdf"],
    ["apply", "inv.yaml", "--forks", "0"],
    ["inventory", "inv.yaml"],
    ["pull", "r", "--once", "--interval", "3"],
    ["keygen", "k", "--psk", "--public-file", "p"],
    ["plan", "inv.yaml", "--no-such-option"],
    ["completion", "fish"],
    ["--color", "sometimes", "plan", "inv.yaml"],
    ["--verbose=2", "plan", "inv.yaml"],
    ["nosuchcommand"],
    [],
    ["-h"],
    ["plan", "-h"],
    ["--version"],
    ["--col", "never", "plan", "inv.yaml"],
    ["--", "plan", "inv.yaml"],
]


def parse(parser: argparse.ArgumentParser, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple:
    try:
        return ("parsed", vars(parser.parse_args(argv)))
    except SystemExit as exc:
        out = capsys.readouterr()
        return ("exit", exc.code, out.out, out.err)


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_one_commands_parser_answers_as_the_whole_one(argv: list[str], capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    whole = parse(cli.parser(), argv, capsys)
    one = parse(cli.parser(cli.command_of(argv)), argv, capsys)
    assert one == whole


def test_every_command_is_known_to_command_of() -> None:
    subparsers = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(subparsers.choices) == cli.COMMANDS


@pytest.mark.parametrize(("argv", "command"), [
    (["plan", "x"], "plan"),
    (["-vvv", "--color", "never", "apply", "x"], "apply"),
    (["--color", "plan", "apply"], "apply"),
    (["--color=never", "facts"], "facts"),
    (["-h", "plan"], None),
    (["--version"], None),
    (["--col", "never", "plan"], None),  # an abbreviation: the whole parser reads it
    (["x.yaml", "plan"], None),
    ([], None),
])
def test_command_of_names_a_command_only_when_that_is_plain(argv: list[str], command: str | None) -> None:
    assert cli.command_of(argv) == command


class _Writes(io.RawIOBase):
    """A file that keeps each write it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return len(data)


def test_every_line_is_one_write_even_where_python_is_unbuffered() -> None:
    """PYTHONUNBUFFERED's stdout, as Python makes it: the text layer writing straight through.
    There print() writes the text and its newline apart, and another process sharing the pipe
    (a fleet's worker) can write between them."""
    raw = _Writes()
    stream = io.TextIOWrapper(raw, write_through=True)
    print("h2: waiting", file=stream)
    assert raw.writes == [b"h2: waiting", b"\n"]  # what the process did before
    raw.writes.clear()
    cli.whole_lines(stream)
    print("h2: waiting", file=stream)
    print("h5: waiting", file=stream, flush=True)
    stream.write("two\nlines\n")
    assert raw.writes == [b"h2: waiting\n", b"h5: waiting\n", b"two\nlines\n"]

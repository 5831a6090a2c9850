"""`provision`: the command line. Turns every expected error into one message and an exit code.

Exit codes: 0 success (with --detailed-exitcode: and no changes), 2 changes pending (only
with --detailed-exitcode), 1 any error.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from collections.abc import Sequence

from . import __version__
from .errors import HostError, InventoryError, ProvisionError
from .hints import Any, NoReturn
from .lock import persistent_dir, state_dir
from .terminal import columns

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
# What a plan or apply made (the inventory, each host's observation and plan), held until the
# process ends when `run` is its caller, which then exits without freeing it (as `run` says why):
# freed one object at a time as the command's function returned, it took 0.8 ms of a 50-host
# plan's 70 and 0.55 ms of a 1000-device plan's. None: `main` called by something that goes on.
_kept: list[object] | None = None
CONNECTIONS = ("local", "netns", "docker")


def run() -> NoReturn:
    """The `provision` command (and `python -m provisioner`): `main`, then an exit that does not
    free the run's objects one by one. At 1000 devices a run holds some 200 000 of them (the
    inventory, the observation, the plan), and the interpreter's teardown took 35-45 ms of a
    0.25 s no-op plan (measured) to free memory the kernel takes back at once. The exit handlers
    still run and the output is flushed; while another thread is alive (none is, in the CLI)
    the ordinary exit is taken, which waits for it, as it is under a profiler (`python -m
    cProfile` writes its figures after the program returns).

    The cyclic garbage collector is off for the run: its passes over the objects a run keeps
    took 20-30 ms of a 1000-device converge and 10 ms of a no-op plan, and found nothing that
    refcounting would not have freed but some 1000 objects of argparse and the imports, whatever
    the inventory's size (tests/unit/test_garbage.py). `pull`, which runs until it is stopped,
    turns it on again."""
    global _kept
    gc.disable()
    whole_lines(sys.stdout, sys.stderr)
    _kept = []
    code = main()
    threading = sys.modules.get("threading")
    if (threading is not None and threading.active_count() > 1) or sys.getprofile() is not None:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the reader went away (a closed pipe): what was not written is lost anyway
        code = code or EXIT_ERROR
    os._exit(code)


def whole_lines(*streams: Any) -> None:
    """Every line in one write. Under PYTHONUNBUFFERED (or -u) print() writes a line's text and
    its newline in two, and a fleet's forked workers write to the same stdout as this process:
    a worker's "waiting for the lock" line ran into another's, and a reader that takes the
    output line by line (a CI log, a test) saw neither. Line buffering keeps each line as
    prompt as unbuffered output was, one write each (a pipe keeps a write of up to 4096 bytes
    whole)."""
    for stream in streams:
        if getattr(stream, "write_through", False):
            stream.reconfigure(write_through=False, line_buffering=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(command_of(argv)).parse_args(argv)
    if args.color:
        from .render import COLOR_ENV

        os.environ[COLOR_ENV] = args.color  # read by render.use_colour, and by forked workers
    try:
        return args.func(args)
    except ProvisionError as exc:
        print(_error_text(exc), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # a bug: say so plainly; PROVISION_DEBUG=1 shows the traceback
        if os.environ.get("PROVISION_DEBUG") or args.verbose >= 3:
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n(this is a bug in provision; "
              "PROVISION_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_ERROR


def _error_text(exc: ProvisionError) -> str:
    if isinstance(exc, InventoryError):
        n = len(exc.diagnostics)
        return f"{exc}\n{n} problem{'s' if n != 1 else ''} found; nothing was changed."
    return f"error: {exc}"


class _Formatter(argparse.HelpFormatter):
    """argparse's own, with the width from terminal.py: argparse makes one for every argument it
    adds, and its own lookup imports shutil (3-4 ms of every command's start)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=columns() - 2)


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 like every other error: argparse's 2 means "changes pending" here.
    Every parser, the subcommands' too, formats help with _Formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or with `only` (a command's name) the top level and that command's
    alone. argparse makes a whole parser for each command, each asking gettext for its words (a
    search of the locale directories every time): building the other eleven cost 5-6 ms of every
    run's start (tests/unit/test_cli.py holds both forms to the same answers)."""

    def wanted(name: str) -> bool:
        return only is None or name == only

    p = _Parser(prog="provision", description="Declarative tun/tap, address and route provisioning.")
    p.add_argument("--version", action="version", version=f"provision {__version__}")
    p.add_argument("--color", choices=("auto", "always", "never"), default=None,
                   help="colour the output: auto (a terminal, unless NO_COLOR; FORCE_COLOR forces it), always, never")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: the files the inventory is read from, and each change's detail; -vvv: a traceback "
                        "with an internal error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def owner(c: argparse.ArgumentParser, take_over: bool = False) -> None:
        c.add_argument("--owner", metavar="ID", help="this inventory's name in each machine's record of who made "
                       "what (default: its directory)")
        if take_over:
            c.add_argument("--take-over", action="store_true",
                           help="change what another inventory made on the same machine, and make it this one's")

    def forks(c: argparse.ArgumentParser) -> None:
        c.add_argument("--forks", "-f", type=_positive, default=1, metavar="N",
                       help="work on N hosts at once, each in its own process (default 1, as listed)")
        c.add_argument("--verbose", "-v", action="count", default=argparse.SUPPRESS,
                       help="as provision -v, and say how long loading and each host's phases (observe, plan, "
                            "apply, verify) took")  # SUPPRESS: `provision -v plan` is not undone by the subcommand

    def command(name: str, help_: str, func: Any, inventory: str = "required") -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_)
        if inventory == "required":
            c.add_argument("inventory", metavar="INVENTORY",
                           help="an Ansible inventory: a YAML or INI file, or a directory of them")
        elif inventory == "optional":
            c.add_argument("inventory", metavar="INVENTORY", nargs="?",
                           help="an Ansible inventory: a YAML or INI file, or a directory of them")
        c.add_argument("--limit", "-l", metavar="PATTERN", help="hosts or groups, comma separated; !x excludes")
        c.add_argument("--connection", "-c", metavar="KIND", choices=CONNECTIONS,
                       help="reach every host this way instead of its ansible_connection (as ansible -c)")
        c.add_argument("--state-dir", metavar="DIR", help="default $PROVISION_STATE_DIR or /run/provision")
        c.set_defaults(func=func)
        return c

    facts_help = ("a `provision facts` snapshot, or a directory of them (one per host; hosts without one "
                  "are skipped); may be given more than once")
    if wanted("validate"):
        command("validate", "check an inventory: schema and semantic rules", cmd_validate).add_argument(
            "--facts", metavar="PATH", action="append", help="check route devices against " + facts_help)
    if wanted("plan"):
        c = command("plan", "show what apply would change", cmd_plan)
        c.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                       help="text (default); json (schemas/plan.schema.json); markdown (a table per host, for a "
                            "pull-request comment)")
        c.add_argument("--json", action="store_true", help="the same as --format json")
        c.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes")
        c.add_argument("--facts", metavar="PATH", action="append", help="plan against " + facts_help +
                       ", not the live kernel")
        c.add_argument("--destroy", action="store_true", help="plan what destroy would remove")
        c.add_argument("--out", metavar="FILE", help="save the plan, for `provision apply FILE` to apply exactly it")
        owner(c)
        forks(c)
    if wanted("apply"):
        c = command("apply", "change the hosts to match the inventory, or to a plan saved by plan --out", cmd_apply)
        c.add_argument("--check", action="store_true", help="change nothing: the same as plan")
        c.add_argument("--detailed-exitcode", action="store_true", help="with --check: exit 2 when there are changes")
        c.add_argument("--diff", action="store_true", help="show old → new for each change")
        c.add_argument("--json", action="store_true", help="machine-readable result")
        c.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long to wait for another run on the same host (default 60)")
        c.add_argument("--confirm-timeout", type=float, metavar="SECONDS",
                       help="after applying, wait for `provision confirm` from a new session; without it in time, "
                            "roll everything back (forwarders included) and exit 1")
        c.add_argument("--force", action="store_true",
                       help="apply changes that can cut a host off (the default route, the session's route, address "
                            "or device) without a confirmation")
        owner(c, take_over=True)
        forks(c)
    if wanted("destroy"):
        c = command("destroy", "remove everything provision owns on the hosts", cmd_destroy)
        c.add_argument("--json", action="store_true", help="machine-readable result")
        c.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS")
        owner(c, take_over=True)
        forks(c)
    if wanted("confirm"):
        c = sub.add_parser("confirm", help="keep the changes of an apply --confirm-timeout that waits",
                           description="Run from a new session (it proves the host is still reachable): every "
                                       "`apply --confirm-timeout` waiting on this machine keeps its changes.")
        c.add_argument("--state-dir", metavar="DIR", help="default $PROVISION_STATE_DIR or /run/provision")
        c.set_defaults(func=cmd_confirm)
    if wanted("status"):
        c = command("status", "show each tunnel's forwarder: state, peer, counters, last error", cmd_status,
                    inventory="optional")
        c.add_argument("--json", action="store_true", help="machine-readable status")
        c.add_argument("--persistent-dir", metavar="DIR", help="where the pull agents' records are: default "
                       "$PROVISION_PERSISTENT_DIR or /var/lib/provision")
    if wanted("inventory"):
        c = command("inventory", "show the inventory as provision reads it (as ansible-inventory does), with each "
                                 "host's merged network and where each entry was written", cmd_inventory)
        shown = c.add_mutually_exclusive_group(required=True)
        shown.add_argument("--list", action="store_true",
                           help="every group and host, as JSON (ansible-inventory --list)")
        shown.add_argument("--host", metavar="HOST", help="one host's variables")
        shown.add_argument("--graph", nargs="?", const="all", metavar="GROUP", help="the groups as a tree")
        c.add_argument("--yaml", action="store_true", help="--host as YAML, each network entry with # FILE:LINE")
        c.add_argument("--flat", action="store_true",
                       help="--host as a one-file inventory of that host (its network merged, with what its tunnels "
                            "need of their peers): what the Ansible collection hands its module")
    if wanted("graph"):
        c = command("graph", "draw the hosts, their devices and the tunnels between them (with each tunnel's state "
                             "where this machine can see it)", cmd_graph)
        c.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="Graphviz DOT (default) or Mermaid")
    if wanted("facts"):
        c = command("facts", "print the live state in the inventory's format", cmd_facts, inventory="optional")
        c.add_argument("--json", action="store_true", help="JSON instead of YAML")
    if wanted("pull"):
        c = sub.add_parser("pull", help="keep this host on the inventory in a git branch (a GitOps agent)",
                           description="Fetch REPO's branch and reconcile this host to the inventory at its commit: "
                                       "a commit is adopted only if it validates and applies (and verifies); else it "
                                       "is recorded as rejected and the host stays on the last good commit, whose "
                                       "drift every run repairs. Only fast-forwards are followed. See `status`.")
        c.add_argument("repo", metavar="REPO", help="a git URL or a local path")
        c.add_argument("--branch", "-b", metavar="B", help="default: the repository's default branch")
        c.add_argument("--inventory", "-i", metavar="PATH", default="inventory.yaml",
                       help="the inventory's path in the repository (default inventory.yaml)")
        c.add_argument("--host", metavar="NAME", help="this host's name in the inventory (default: the hostname)")
        when = c.add_mutually_exclusive_group()
        when.add_argument("--interval", type=float, metavar="SECONDS", help="run again every SECONDS, until SIGTERM")
        when.add_argument("--once", action="store_true", help="run once (the default)")
        c.add_argument("--verify-signatures", action="store_true",
                       help="apply only commits signed (git SSH signing) by a key in --allowed-signers")
        c.add_argument("--allowed-signers", metavar="FILE", help="an ssh allowed-signers file (ssh-keygen(1))")
        c.add_argument("--no-repair", dest="repair", action="store_false",
                       help="report drift from the last good commit instead of repairing it")
        c.add_argument("--allow-reset", action="store_true", help="follow a rewritten (force-pushed) branch")
        c.add_argument("--retry", action="store_true", help="try the branch's commit again even if it was rejected")
        c.add_argument("--facts-out", metavar="FILE",
                       help="after each run write this host's `provision facts --json` here (a snapshot for CI)")
        c.add_argument("--min-commit", metavar="COMMIT",
                       help="with no record of a last good commit (a new host, a lost disk), adopt only commits that "
                            "descend from this one; without it and without a record nothing is adopted")
        c.add_argument("--netns", metavar="NAME",
                       help="the host is this network namespace (default: this host's own network); the commit's "
                            "ansible_connection and ansible_host are never used")
        c.add_argument("--state-dir", metavar="DIR", help="default $PROVISION_STATE_DIR or /run/provision")
        c.add_argument("--persistent-dir", metavar="DIR", help="where the record that refuses rollbacks is kept: "
                       "default $PROVISION_PERSISTENT_DIR or /var/lib/provision")
        c.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS")
        c.set_defaults(func=cmd_pull)
    if wanted("completion"):
        c = sub.add_parser("completion", help="print a shell completion script (bash, zsh, tcsh)",
                           description="Print a completion script for SHELL; e.g. in ~/.bashrc: "
                                       "eval \"$(provision completion bash)\"")
        c.add_argument("shell", choices=("bash", "zsh", "tcsh"), metavar="SHELL", help="bash, zsh or tcsh")
        c.set_defaults(func=cmd_completion)
    if wanted("keygen"):
        c = sub.add_parser("keygen", help="write a host's tunnel private key (mode 0600) and print its public key",
                           description="Write a new X25519 private key (32 bytes in base64, as `wg genkey`) to PATH "
                                       "with mode 0600, and print its public key as the line to paste into the "
                                       "host's inventory entry (tunnel_public_key: KEY). Give the host "
                                       "tunnel_private_key_file: PATH. With --psk, write a pre-shared key for "
                                       "psk_file instead (the same file on both ends of a tunnel).")
        c.add_argument("path", metavar="PATH")
        c.add_argument("--force", action="store_true", help="replace an existing key (plan shows the change)")
        kind = c.add_mutually_exclusive_group()
        kind.add_argument("--psk", action="store_true", help="a pre-shared key for a tunnel's psk_file")
        kind.add_argument("--public-file", metavar="FILE",
                          help="also write the public key to FILE (for tunnel_public_key_file)")
        c.set_defaults(func=cmd_keygen)
    return p



COMMANDS = ("validate", "plan", "apply", "destroy", "confirm", "status", "inventory", "graph", "facts", "pull",
            "completion", "keygen")
_TOP_FLAG = re.compile(r"-v+|--verbose|--color=.*")  # the top level's options that take no separate value


def command_of(argv: Sequence[str]) -> str | None:
    """The command `argv` names, when that is plain without a parser: the first word that is not
    an option (nor --color's value). None for anything else (-h, --version, an abbreviated
    option, no or no such command): then the whole parser reads it, and says what is wrong."""
    value = False
    for word in argv:
        if value:
            value = False
        elif word == "--color":
            value = True
        elif not _TOP_FLAG.fullmatch(word):
            return word if word in COMMANDS else None
    return None

def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


# ---------------------------------------------------------------- commands


def _load(args: argparse.Namespace, act: bool = False) -> Any:
    import time

    from .reconcile import load

    start = time.perf_counter()
    loaded = load(args.inventory, args.limit, getattr(args, "connection", None), act, cache_dir=_cache_dir(args))
    args.load_seconds = time.perf_counter() - start
    if args.verbose:
        for doc in loaded.inventory.source.documents:
            print(f"read {doc.file}", file=sys.stderr)
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    return loaded


def _cache_dir(args: argparse.Namespace) -> Any:
    """Validated inventories are kept in the state directory (cache.py); where there is none
    that may be used (validate in CI, as a user), every run judges the inventory afresh."""
    try:
        return state_dir(args.state_dir) / "cache"
    except ProvisionError:
        return None


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(parser(), shell=args.shell), end="")
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from . import keys

    if args.psk:
        psk_id = keys.pskgen(args.path, args.force)
        print(f"{args.path}: new pre-shared key {psk_id} (mode 0600); name this file as psk_file on both ends "
              "of the tunnel", file=sys.stderr)
        return EXIT_OK
    public = keys.keygen(args.path, args.force)
    if args.public_file:
        keys.write_public(args.public_file, public)
    print(f"{args.path}: new private key (mode 0600); give the host tunnel_private_key_file: {args.path} "
          "and this public key:", file=sys.stderr)
    print(f"tunnel_public_key: {public}")
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    import socket

    gc.enable()  # the agent runs for days: run() turns the collector off only for a command that ends

    from .pull.agent import Agent, Options, loop

    if args.verify_signatures != bool(args.allowed_signers):
        raise ProvisionError("--verify-signatures and --allowed-signers FILE go together")
    if args.allowed_signers and not os.path.isfile(args.allowed_signers):
        raise ProvisionError(f"allowed-signers file {args.allowed_signers}: no such file")
    if args.min_commit is not None and not re.fullmatch(r"[0-9a-f]{7,64}", args.min_commit):
        raise ProvisionError(f"--min-commit {args.min_commit!r}: expected a commit id (7 to 64 hex digits)")
    if args.verify_signatures and not args.branch:
        raise ProvisionError("--verify-signatures needs --branch: a signed commit is adopted only if it names "
                             "the branch it was signed for")
    if args.interval is not None and args.interval <= 0:
        raise ProvisionError("--interval must be more than 0 seconds")
    local = "://" not in args.repo and ":" not in args.repo.split("/", 1)[0]  # not a URL nor host:path
    repo = os.path.abspath(args.repo) if local else args.repo  # one agent per repository, wherever run from
    options = Options(repo, args.branch, args.inventory, args.host or socket.gethostname(),
                      state_dir(args.state_dir), persistent_dir(args.persistent_dir), args.netns, args.min_commit,
                      os.path.abspath(args.allowed_signers) if args.allowed_signers else None,
                      args.repair, args.allow_reset, args.retry, args.lock_timeout,
                      os.path.abspath(args.facts_out) if args.facts_out else None)
    agent = Agent(options, lambda line: print(f"provision pull: {line}", flush=True))
    with agent.locked():
        return loop(agent, args.interval)


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load(args)
    notes = []
    if args.facts:
        from .facts import load_snapshots
        from .reconcile import plan_for

        snapshots = load_snapshots(args.facts)
        for host in loaded.hosts:
            if host.name in snapshots:
                plan_for(snapshots[host.name], host, loaded.desired[host.name], loaded.inventory.source, False)
    else:
        notes = _check_live_devs(args, loaded)
    n = len(loaded.inventory.hosts)
    print(f"{args.inventory}: valid ({n} host{'s' if n != 1 else ''})")
    for note in notes:
        print(f"note: {note}")
    return EXIT_OK


def _check_live_devs(args: argparse.Namespace, loaded: Any) -> list[str]:
    """Route devices that are not declared must exist on the host: check where we can reach it."""
    from .connection import skip_reason
    from .reconcile import Status
    from .runner import runner_for

    notes = []
    undeclared = [h for h in loaded.hosts if any(
        e.value.get("dev") is not None and e.value.get("state") != "absent"
        and e.value["dev"] not in {d.value.get("name") for d in h.network.get("devices", ())}
        for e in h.network.get("routes", ()))]
    reach = _reach(args, loaded, lock_timeout=0)
    for host in undeclared:
        if skip_reason(host):
            notes.append(f"{host.name}: route devices not checked ({skip_reason(host)})")
            continue
        try:
            outcome = runner_for(host, reach).plan(loaded.desired[host.name], False)
        except HostError as exc:
            notes.append(f"{host.name}: route devices not checked: {exc.message}")
            continue
        except ProvisionError as exc:
            if isinstance(exc, InventoryError):
                raise
            notes.append(f"{host.name}: route devices not checked: {exc}")
            continue
        if outcome.status is Status.FAILED:
            raise ProvisionError(outcome.error or f"{host.name}: the plan failed")
    return notes


def _reach(args: argparse.Namespace, loaded: Any, lock_timeout: float = 60.0) -> Any:
    """How the runners reach the hosts of this command (runner.Reach)."""
    from .runner import Reach

    return Reach(args.inventory, loaded.inventory.source, loaded.everyone, state_dir(args.state_dir),
                 getattr(args, "lock_timeout", lock_timeout), lambda m: print(m, file=sys.stderr))


def cmd_plan(args: argparse.Namespace) -> int:
    return _run(args, apply=False, destroy=args.destroy)


def cmd_apply(args: argparse.Namespace) -> int:
    from .saved import is_saved_plan, read

    if not is_saved_plan(args.inventory):
        return _run(args, apply=not args.check, destroy=False)
    if args.limit or args.connection:
        raise ProvisionError(f"{args.inventory} is a saved plan: it keeps the --limit and --connection it was made "
                             "with")
    saved = read(args.inventory)
    args.inventory, args.limit, args.connection = saved.inventory, saved.limit, saved.connection
    return _run(args, apply=not args.check, destroy=saved.destroy, saved=saved)


def cmd_destroy(args: argparse.Namespace) -> int:
    return _run(args, apply=True, destroy=True)


def _run(args: argparse.Namespace, apply: bool, destroy: bool, saved: Any = None) -> int:
    from . import fleet
    from .facts import load_snapshots
    import time

    from .reconcile import Job, Outcome, Safety, Status
    from .render import (
        ProgressLine,
        change_line,
        json_text,
        plan_markdown,
        print_plan,
        progress_text,
        recap_line,
        result_json,
        seconds_text,
        use_colour,
    )

    facts = getattr(args, "facts", None)
    loaded = _load(args, act=not destroy and not facts)
    form = "json" if getattr(args, "json", False) else getattr(args, "format", "text")
    as_text = form == "text"
    colour = use_colour(sys.stdout) and as_text
    detail = getattr(args, "diff", False) or args.verbose > 0
    job = Job(args.inventory, apply=apply, destroy=destroy,
              state_dir=None if facts else state_dir(args.state_dir),
              snapshots=load_snapshots(facts) if facts else None, snapshots_from=", ".join(facts or ()),
              skip_unsnapshotted=any(os.path.isdir(f) for f in facts or ()),
              lock_timeout=getattr(args, "lock_timeout", 60.0),
              safety=Safety(getattr(args, "force", False), getattr(args, "confirm_timeout", None)),
              owner=getattr(args, "owner", None) or "", take_over=getattr(args, "take_over", False))
    if saved is not None:
        job = _check_saved(saved, loaded, job, args.forks)

    # a line that follows each host's phases, on a terminal only: never in a pipe or a log, never with JSON
    line = ProgressLine(sys.stderr) if as_text and sys.stderr.isatty() and args.forks <= 1 else None
    started = time.monotonic()

    def report(host: str, change: Any) -> None:
        if as_text:
            if line is not None:
                line.clear()
            print(f"{host}: {change_line(change, colour, detail)}", flush=True)

    def notify(message: str) -> None:
        if line is not None:
            line.clear()
        print(message, file=sys.stdout if as_text else sys.stderr, flush=True)

    def progress(host: str, phase: Any, done: int, total: int) -> None:
        assert line is not None
        line.update(progress_text(host, phase, done, total, time.monotonic() - started), force=done == total)

    outcomes: list[Outcome] = []
    if _kept is not None:
        _kept.extend((loaded, outcomes))
    for outcome in fleet.run(loaded, job, args.forks, report, notify, progress if line is not None else None):
        if line is not None:
            line.clear()
        outcomes.append(outcome)
        if not as_text:
            continue
        if outcome.status is Status.SKIPPED:
            print(f"{outcome.host}: skipped ({outcome.error})")
        elif outcome.status is Status.FAILED:
            print(f"{outcome.host}: FAILED: {(outcome.error or '').removeprefix(outcome.host + ': ')}",
                  file=sys.stderr)
        elif not apply and outcome.plan is not None:
            if not outcome.plan.empty:
                print(f"{outcome.host}:" + (" (destroy)" if destroy else ""))
            print_plan(outcome.plan, colour=colour)
        if apply and outcome.status is Status.OK:
            print(f"{outcome.host}: no changes")
    failed = any(o.status is Status.FAILED for o in outcomes)
    pending = any(o.plan is not None and not o.plan.empty for o in outcomes)
    if getattr(args, "out", None) and not failed:
        from .saved import write

        write(args.out, loaded.inventory.source, args.limit, args.connection, destroy,
              [o.plan for o in outcomes if o.plan is not None])
        print(f"saved the plan to {args.out}; apply exactly it with: provision apply {args.out}",
              file=sys.stdout if as_text else sys.stderr)
    if form == "json":
        print(json_text(result_json(outcomes, applied=apply)))
    elif form == "markdown":
        print(plan_markdown(outcomes, destroy=destroy), end="")
    elif apply:
        width = max((len(o.host) for o in outcomes), default=0)
        print()
        print("RECAP")
        for o in outcomes:
            in_sync = o.plan.in_sync if o.plan else 0
            failed_here = o.status is Status.FAILED
            recap = recap_line(o.host, in_sync + len(o.applied), len(o.applied), int(failed_here and not o.unreachable),
                               width, int(o.unreachable), int(o.status is Status.SKIPPED))
            print(recap + (f"  ({seconds_text(o.seconds)})" if args.verbose and o.seconds else ""))
    if as_text and args.verbose:
        how = "cached verdict" if loaded.from_cache else "parsed and validated"
        print(f"\nload {args.load_seconds:.2f} s ({how}), hosts {time.monotonic() - started:.2f} s"
              + "".join(f"\n{o.host}: {seconds_text(o.seconds)}" for o in outcomes if o.seconds and not apply))
    if failed:
        return EXIT_ERROR
    if not apply and getattr(args, "detailed_exitcode", False) and pending:
        return EXIT_CHANGES
    return EXIT_OK


def _check_saved(saved: Any, loaded: Any, job: Any, forks: int) -> Any:
    """Refuse a stale saved plan before any host is changed; the job checks each host again under its lock."""
    from dataclasses import replace
    from functools import partial

    from . import fleet
    from .reconcile import Status
    from .errors import StalePlanError
    from .saved import check_host, check_inventory

    check_inventory(saved, loaded.inventory.source)
    for outcome in fleet.run(loaded, replace(job, apply=False), forks, lambda h, c: None, lambda m: None):
        if outcome.status is Status.FAILED:
            raise StalePlanError(f"{saved.file}: cannot check {outcome.host} against the plan: {outcome.error}; "
                                 "nothing was applied")
        if outcome.plan is not None:
            check_host(saved, outcome.plan)
    return replace(job, check=partial(check_host, saved))


def cmd_status(args: argparse.Namespace) -> int:
    from .connection import skip_reason
    from .pull.agent import records
    from .render import FORMAT_VERSION, json_text, pull_status, status_table
    from .runner import runner_for
    from .tunnel import runtime

    directory = state_dir(args.state_dir)
    rows: list[dict[str, Any]] = []
    agents = records(persistent_dir(args.persistent_dir))
    if args.inventory:
        loaded = _load(args)
        agents = [a for a in agents if a["host"] in {h.name for h in loaded.hosts}]
        reach = _reach(args, loaded)
        for host in loaded.hosts:
            if skip_reason(host) is None:
                rows += runner_for(host, reach).status()
    else:  # every machine this state directory knows, by its state name (connection/identity.py)
        base = directory / "tunnels"
        for host_dir in sorted(base.iterdir()) if base.is_dir() else ():
            rows += runtime.status(directory, host_dir.name)
    if args.json:
        print(json_text({"format_version": FORMAT_VERSION, "tunnels": rows, "pull": agents}))
        return EXIT_OK
    print(status_table(rows) if rows else "no tunnels")
    for agent in agents:
        print("\n" + pull_status(agent))
    return EXIT_OK


def cmd_confirm(args: argparse.Namespace) -> int:
    from .confirm import confirm

    answered = confirm(state_dir(args.state_dir))
    if not answered:
        raise ProvisionError("no apply is waiting for a confirmation")
    for host in answered:
        print(f"{host}: confirmed; the apply keeps its changes")
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from .connection import skip_reason
    from .render import graph_dot, graph_mermaid
    from .runner import runner_for
    from .topology import topology

    loaded = _load(args)
    states: dict[tuple[str, str], str] = {}
    try:
        reach = _reach(args, loaded)
    except ProvisionError:
        reach = None  # no state directory of ours (not root): the picture without states
    for host in loaded.hosts if reach is not None else ():
        try:
            rows = runner_for(host, reach).status() if skip_reason(host) is None else []
        except ProvisionError:
            rows = []  # not reachable from here: drawn without its state
        states.update({(host.name, row["tunnel"]): row["state"] for row in rows})
    topo = topology(loaded.desired, states)
    print(graph_mermaid(topo) if args.format == "mermaid" else graph_dot(topo), end="")
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace) -> int:
    from .inventory import flatten
    from .render import inventory_graph, inventory_host_yaml, inventory_list, json_text

    loaded = _load(args)
    inventory = loaded.inventory
    if args.list:
        print(json_text(inventory_list(inventory), indent=4, sort_keys=True))
    elif args.graph:
        if args.graph not in inventory.groups:
            raise ProvisionError(f"{args.inventory}: no group {args.graph!r}")
        print(inventory_graph(inventory, args.graph), end="")
    else:
        host = loaded.everyone.get(args.host)
        if host is None:
            raise ProvisionError(f"{args.inventory}: no host {args.host!r}")
        if args.flat:
            print(json_text(flatten(host, loaded.everyone)))
        elif args.yaml:
            print(inventory_host_yaml(inventory, host), end="")
        else:
            print(json_text(inventory_list(inventory)["_meta"]["hostvars"][host.name], indent=4, sort_keys=True))
    return EXIT_OK


def cmd_facts(args: argparse.Namespace) -> int:
    from .connection import skip_reason
    from .inventory import Host
    from .reconcile import Loaded
    from .render import facts_yaml, json_text
    from .runner import runner_for

    if args.inventory:
        loaded = _load(args)
    else:
        from .inventory import Inventory
        from .source import Sources

        here = Host("localhost", (), (), {"ansible_connection": "local"})
        loaded = Loaded(Inventory(Sources("<this machine>"), (here,), {}), (here,), {})
    reach = _reach(args, loaded)
    doc: dict[str, Any] = {"all": {"hosts": {}}}
    for host in loaded.hosts:
        if skip_reason(host) is None:
            doc["all"]["hosts"][host.name] = runner_for(host, reach).facts()
    print(json_text(doc) if args.json else facts_yaml(doc), end="" if not args.json else "\n")
    return EXIT_OK


if __name__ == "__main__":
    run()

"""The agent's view of git: a private bare repository that it fetches one branch into, and
the few questions it asks of it. A thin layer over the `git` command, which already knows
every transport (paths, file://, ssh, https) and how to check an SSH signature.

Git is never allowed to ask anything (no terminal prompts, ssh in batch mode), and every
call has a timeout: an agent must not hang on a host that nobody is looking at.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from ..errors import ProvisionError
from ..files import FileError, atomic_write, private_subdirectory, read_regular

TIMEOUT = 120.0
GOOD_REF = "refs/provision/good"  # keeps the last good commit from being garbage-collected
FETCHED_REF = "refs/provision/fetched"


class GitError(ProvisionError):
    """Raised when git cannot do what the agent asked: fetch, find a commit, read a tree."""


class Repository:
    def __init__(self, path: Path):
        self.path = path

    def ensure(self) -> None:
        """Create the bare repository once; after a kill, drop the lock files git left behind
        (we hold the agent's lock, so no other git runs here)."""
        if not (self.path / "HEAD").exists():
            tmp = self.path.with_name(self.path.name + ".new")
            _remove(tmp)
            self._git("init", "--quiet", "--bare", str(tmp), cwd=self.path.parent)
            tmp.rename(self.path)
        # What git writes and what is deleted below are inside the repository, never where a link
        # planted here leads: the directories it writes into are real ones, FETCH_HEAD is never
        # written (git truncated whatever it led to), and a bare clone keeps no reflogs.
        refs = private_subdirectory(self.path.parent, self.path.name, "refs")
        private_subdirectory(refs, "provision")
        objects = private_subdirectory(self.path, "objects")
        with os.scandir(objects) as found:  # loose objects' XX/, info/, pack/: git makes them, or writes in them
            for entry in found:
                if entry.is_symlink():
                    _remove(Path(entry.path))
        private_subdirectory(objects, "pack")
        for stale in [*self.path.glob("*.lock"), *refs.rglob("*.lock"), self.path / "FETCH_HEAD", self.path / "logs"]:
            _remove(stale)
        # The repository's own configuration is git's too (a credential helper, an ssh command):
        # it says only what `git init --bare` wrote, nothing a file put here since could add.
        for path, want in ((self.path / "config", _trusted_config),
                           (private_subdirectory(self.path, "info") / "attributes", lambda _: NEUTRAL_ATTRIBUTES)):
            try:
                current = read_regular(path)
            except FileError:
                current = b""
            text = want(current.decode(errors="replace"))
            if current != text.encode():
                atomic_write(path, text.encode())

    def fetch(self, url: str, branch: str | None) -> str:
        """The branch's commit in `url` (its default branch if None), fetched with its history."""
        try:
            self._git("fetch", "--quiet", "--no-tags", "--force", "--no-write-fetch-head", "--", url,
                      f"+{'refs/heads/' + branch if branch else 'HEAD'}:{FETCHED_REF}")
        except GitError as exc:
            text = str(exc)
            if "couldn't find remote ref" in text:
                raise GitError(f"branch {branch!r} does not exist in {url}") from None
            raise GitError(f"cannot fetch {url}: {text}") from None
        return self._git("rev-parse", "--verify", f"{FETCHED_REF}^{{commit}}").strip()

    def is_ancestor(self, old: str, new: str) -> bool:
        """True when `new` is `old` or descends from it: a fast-forward."""
        code = self._run("merge-base", "--is-ancestor", old, new).returncode
        if code not in (0, 1):
            return False  # `old` is gone from the repository: not a fast-forward we can prove
        return code == 0

    def verify_signature(self, commit: str, allowed_signers: str) -> tuple[bool, str]:
        """(signed by a key in the allowed-signers file, git's own words), with SSH signing."""
        p = self._run("-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={allowed_signers}",
                      "verify-commit", "--raw", commit)
        words = " ".join((p.stderr or "").split())
        if p.returncode == 0:
            return True, words
        if not words or "no signature" in words.lower():
            words = "the commit is not signed"
        return False, words

    def keep_good(self, commit: str) -> None:
        self._git("update-ref", GOOD_REF, commit)

    def subject(self, commit: str) -> str:
        return self._git("log", "-1", "--format=%s", commit).strip()

    def branch_trailers(self, commit: str, key: str) -> tuple[str, ...]:
        """The values of the commit message's `key:` trailers (part of what a signature covers)."""
        out = self._git("log", "-1", f"--format=%(trailers:key={key},valueonly,separator=%x00)", commit)
        return tuple(v.strip() for v in out.strip("\n").split("\0") if v.strip())

    def extract(self, commit: str, into: Path, under: str = ".") -> Path:
        """The commit's files below `under` at `into` (made whole, then renamed into place, so a
        kill never leaves half a tree that looks complete). Exactly the bytes committed: the
        commit's .gitattributes and any git configuration but the repository's own are ignored
        (export-subst, filters, eol conversion), and a commit with any link in that tree is
        refused: a link's target is only known once the links it goes through are, and a
        lexical check of it is fooled by `z -> .` followed by `z/../../..`."""
        if into.is_dir():
            return into
        p = subprocess.run(["git", *NO_HOOKS, "-C", str(self.path), "-c", "core.attributesFile=/dev/null", "archive",
                            "--format=tar", commit, "--", under],
                           capture_output=True, timeout=TIMEOUT, env=_bare_env())
        if p.returncode != 0:
            raise GitError(f"cannot read commit {commit[:12]}: {_last_line(p.stderr.decode(errors='replace'))}")
        tmp = into.with_name(into.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700, parents=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
                members = [m for m in tar.getmembers() if m.name != "pax_global_header"]
                for member in members:
                    _plain(member)
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python ≥ 3.11.4
                tar.extractall(tmp, members=members, **extra)  # type: ignore[arg-type]
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise GitError(f"commit {commit[:12]} cannot be checked out safely: {exc}") from None
        tmp.rename(into)
        return into

    def _run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(["git", *NO_HOOKS, *(("-C", str(self.path)) if cwd is None else ()), *args],
                                  capture_output=True, text=True, timeout=TIMEOUT, env=_env(), cwd=cwd,
                                  umask=0o077)  # what it makes is ours alone, as the checks above want
        except FileNotFoundError:
            raise GitError("git is not installed (apt-get install git)") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} did not finish in {TIMEOUT:g} s") from None

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        p = self._run(*args, cwd=cwd)
        if p.returncode != 0:
            raise GitError(_last_line(p.stderr) or f"git {args[0]} failed (exit {p.returncode})")
        return p.stdout


def _remove(path: Path) -> None:
    """Whatever is at `path` (a link itself, never what it leads to; a FIFO; a directory), or
    nothing. rmtree refuses a link and leaves it, and unlink a directory."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileError(path, exc.strerror or "cannot be removed", exc.errno) from None
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _plain(member: tarfile.TarInfo) -> None:
    """Only directories and regular files: git trees hold no `..` or absolute paths, but a
    symbolic link may point anywhere, and a tar made by git holds nothing else we need."""
    if member.issym() or member.islnk():
        raise tarfile.TarError(f"{member.name} is a link (to {member.linkname}); links are refused in the "
                               "inventory's directory")
    if not (member.isfile() or member.isdir()):
        raise tarfile.TarError(f"{member.name} is not a regular file nor a directory")


def _env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C",
            "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")}


# What a bare repository's config may say: what `git init --bare` writes, with the formats it
# chooses (GIT_DEFAULT_HASH=sha256, init.defaultRefFormat), and nothing else.
_KEPT = {("core", "repositoryformatversion"): ("0", "1"), ("extensions", "objectformat"): ("sha1", "sha256"),
         ("extensions", "refstorage"): ("files", "reftable")}


def _trusted_config(text: str) -> str:
    """The config git init wrote, from `text` (the file as found, which anyone who could write
    the state directory may have changed): its formats kept, every other line dropped."""
    section, kept = "", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if value in _KEPT.get((section, key), ()):
            kept[(section, key)] = value
    extensions = [f"\t{key} = {value}\n" for (section, key), value in kept.items() if section == "extensions"]
    version = "1" if extensions else kept.get(("core", "repositoryformatversion"), "0")  # git reads extensions in 1
    out = f"[core]\n\trepositoryformatversion = {version}\n\tfilemode = true\n\tbare = true\n"
    return out + ("[extensions]\n" + "".join(extensions) if extensions else "")


# What no configuration of git's may change here: no hook runs (the repository's hooks directory
# is in the state directory, not ours to trust), and what git makes follows the umask (077), so
# it passes the checks of ensure() (core.sharedRepository=group in /etc/gitconfig would not).
NO_HOOKS = ("-c", f"core.hooksPath={os.devnull}", "-c", "core.sharedRepository=umask")
NEUTRAL_ATTRIBUTES = "* -filter -export-subst -export-ignore -ident -text -eol -working-tree-encoding\n"


def _bare_env() -> dict[str, str]:
    """For reading a commit's files: no system or global git configuration (a filter driver
    there would run on the commit's say-so)."""
    return {**_env(), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1", "XDG_CONFIG_HOME": os.devnull, "HOME": os.devnull}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fatal = [line.removeprefix("fatal: ").removeprefix("error: ").rstrip(".")
             for line in lines if line.startswith(("fatal:", "error:"))]
    return "; ".join(fatal) if fatal else (lines or [""])[-1]

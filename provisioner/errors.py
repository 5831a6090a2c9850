"""Every error `provision` raises on purpose.

    ProvisionError                      root; the CLI prints it as one message, exit 1
    ├── InventoryError (ValueError)     the inventory cannot be used; carries every Diagnostic
    ├── HostError                       a problem that belongs to one host
    │   ├── UnreachableError            the host cannot be reached (no netns, no root, ...)
    │   ├── ConflictError               the inventory asks for something the live state forbids
    │   ├── KernelError                 the kernel refused a step; keeps errno and its reason
    │   ├── ForwarderError              a tunnel's forwarder could not be started or stopped
    │   └── VerificationError           after apply the live state still differs (carries the diff)
    ├── StalePlanError                  a saved plan no longer describes what apply would do
    └── LockTimeout (TimeoutError)      another run holds the host's lock for too long

Anything else that escapes is a bug, and the CLI says so instead of hiding it.
"""

from __future__ import annotations

import errno as errno_
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """`all.hosts.gw1.network.devices[0].mac`: how a person writes a place in YAML."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Diagnostic:
    """One problem in the inventory, with where it is, so that all can be reported at once."""

    path: Path
    message: str
    file: str = ""
    line: int | None = None
    column: int | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file or "<inventory>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        field_ = format_path(self.path)
        label = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}: {field_ + ': ' if field_ else ''}{label}{self.message}"


class ProvisionError(Exception):
    """Root of the tree: an expected failure with a message fit for a person."""


class InventoryError(ProvisionError, ValueError):
    """The inventory is not valid; raised by loading, schema and semantic validation."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class LockTimeout(ProvisionError, TimeoutError):
    """Raised when another run keeps a host's lock longer than we were told to wait."""


class StalePlanError(ProvisionError):
    """Raised by `apply FILE` when the inventory or a host's live state moved since the plan was saved."""


class HostError(ProvisionError):
    """A failure that concerns one host; the other selected hosts still run."""

    def __init__(self, host: str, message: str, resource: str = "", details: Sequence[str] = ()):
        self.host, self.message, self.resource, self.details = host, message, resource, tuple(details)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.host}: {self.resource}: " if self.resource else f"{self.host}: "
        return where + self.message + "".join(f"\n  {d}" for d in self.details)


class UnreachableError(HostError):
    """Raised when the host cannot be reached: a missing namespace, no privileges."""


class ConflictError(HostError):
    """Raised by planning when the inventory wants something the live kernel state rules out."""


class VerificationError(HostError):
    """Raised when the state read back after apply still differs from the inventory."""


class ForwarderError(HostError):
    """Raised when a tunnel's supervisor does not come up, or does not go away, when told."""


class KernelError(HostError):
    """The kernel refused an operation (or, not `refused`, its socket failed); `code` keeps the
    errno and `reason` its own words."""

    def __init__(self, host: str, resource: str, code: int, reason: str = "", refused: bool = True):
        self.code, self.reason = code, reason or os.strerror(code)
        super().__init__(host, f"kernel refused: {kernel_words(code, reason)}" if refused else kernel_words(code, reason),
                         resource)


def kernel_words(code: int, reason: str = "") -> str:
    """The kernel's refusal as people read it: its own words (or the errno's) and the errno's name."""
    return f"{reason or os.strerror(code)} ({errno_.errorcode.get(code, str(code))})"


def collect(diagnostics: Iterable[Diagnostic]) -> None:
    """Raise one InventoryError for all errors (warnings do not stop anything)."""
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise InventoryError(errors)

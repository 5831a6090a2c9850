"""The names of `typing` that provision's type hints use, without importing `typing` when it runs.

Every module has `from __future__ import annotations`: its hints are strings that only a type
checker reads. Importing `typing` for them cost 9.5M instructions, 2 ms of every run (2% of a
no-op plan). A type checker takes `TYPE_CHECKING` as true and sees typing's own names; at run
time they are stand-ins: an interface (a `Protocol`) is a plain class, never instantiated, and
the few aliases made at import (`list[Any]`) take `object`.
"""

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any as Any, NoReturn as NoReturn, Protocol as Protocol, TextIO as TextIO
    from typing import TypeGuard as TypeGuard
else:
    Any = NoReturn = TextIO = TypeGuard = object
    Protocol = object

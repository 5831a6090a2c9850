"""The `provision` process, as the console script and `python -m provisioner` start it: the
cyclic garbage collector is turned off before anything is imported, dataclasses is imported
without inspect and handed the methods compiled at install (precompiled.py), then cli.run.

Importing the command (argparse, dataclasses, pathlib, provision's own modules)
makes enough objects for 17 passes of the collector, 5 ms of a 0.2 s no-op plan, that find
nothing to free; cli.run keeps it off for the run (tests/unit/test_garbage.py says why it may),
and `pull`, which runs for days, turns it on again. Nothing else belongs here: whatever this
module imports is imported with the collector still on."""

import gc


def run() -> None:  # cli.run ends the process
    gc.disable()
    from .precompiled import install

    install()
    from .cli import run as run_cli

    run_cli()

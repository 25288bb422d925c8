"""``python -m extvisor`` and the ``extvisor`` console script.

``--version`` is answered before click is imported: it is the call scripts make most
to see whether extvisor is there, and click alone costs three interpreter starts.

A client command (one call to the daemon and some printing), and ``extvisor --help``, leave
through ``os._exit`` once their output is flushed: tearing down the interpreter's modules
(click, ``inspect``, ``typing``) costs a short call 5-13 ms and frees nothing it needs.
Long-running commands (the daemon, dev mode, the dashboard) exit normally.
"""

import os
import sys

# they only talk to a daemon or print help: nothing of theirs needs the interpreter's teardown
QUICK = frozenset({"services", "service", "logs", "events", "extensions", "stats", "processes",
                   "--help", "-h"})


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        from extvisor._version import __version__

        print(f"extvisor, version {__version__}")
        return
    from extvisor.cli.main import main

    if not QUICK.intersection(sys.argv[1:2]):
        main(prog_name="extvisor")
        return
    try:
        main(prog_name="extvisor")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    _quick_exit(code)


def _quick_exit(code: int) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `extvisor logs x | head`: the reader left, as with any tool
        code = code or 1
    except OSError:
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    run()

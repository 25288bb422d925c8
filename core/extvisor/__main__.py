"""``python -m extvisor`` and the ``extvisor`` console script.

``--version`` is answered before click is imported: it is the call scripts make most
to see whether extvisor is there, and click alone costs three interpreter starts.
"""

import sys


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        from extvisor._version import __version__

        print(f"extvisor, version {__version__}")
        return
    from extvisor.cli.main import main

    main(prog_name="extvisor")


if __name__ == "__main__":
    run()

"""Where the client configuration is looked for; standard library only, so that a CLI call
against the local socket can tell that there is none without loading the rest of this package."""

from __future__ import annotations

import os

CONFIG_ENV = "EXTVISOR_CONFIG"


def config_file(explicit: str | os.PathLike[str] | None = None) -> str:
    """``--config FILE``, else ``$EXTVISOR_CONFIG``, else ``~/.extvisor/config``."""
    if explicit:
        return os.fspath(explicit)
    return os.environ.get(CONFIG_ENV) or os.path.join(os.path.expanduser("~"), ".extvisor", "config")

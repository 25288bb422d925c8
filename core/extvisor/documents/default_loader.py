"""The core's own ``extvisor_load_services``: the config directory, read as Talos reads it.

Registered by the plugin manager by name (``extvisor.plugins.CORE_PLUGINS``), like a third
party's source would be through an entry point. The reading itself is
:func:`extvisor.documents.loader.load_directory`; the ``depends`` kinds come in the context.
"""

from __future__ import annotations

import logging
from pathlib import Path

from extvisor import hookimpl
from extvisor.documents.loader import load_directory
from extvisor.records import LoadContext, LoadedService

log = logging.getLogger("extvisor.loader")


@hookimpl
def extvisor_load_services(context: LoadContext) -> list[LoadedService]:
    """The config directory, read as Talos reads /usr/local/etc/containers."""
    if not Path(context.config_dir).is_dir():
        log.info("service directory %s not found; no services from it", context.config_dir)
        return []
    return load_directory(context.config_dir, context.kinds, context.strict)

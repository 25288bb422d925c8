"""The documents extvisor reads: the service file and ``ExtensionServiceConfig`` formats.

Holds their models (``models``; the ``healthcheck:`` key and Go durations in ``health``), YAML read as Talos reads it with a position for every
value (``yamlio``), regular files of bounded size (``files``), loading service files with
every problem located (``loader``), ExtensionServiceConfig streams (``configdocs``), the
node's ImageVerificationConfig, read from the same streams (``imageverify``), a declared
node's file (``declared``: SystemExtensionsConfig with its config documents, and masking
secrets), the
shaping and locating of findings (``report``), the located diagnostic itself, also used for
extension images (``findings``), ``extvisor validate`` over files (``validate``), the JSON
Schema (``schema``), and the core's own ``extvisor_load_services`` plugin, which reads the
config directory (``default_loader``).

May import: the plugin surface only. Never ``extvisor.plugins`` (the plugin host sits above:
it collects what loaders read) or any part above it.

Plugins may import from here (``extvisor.documents.loader.load_service_text`` for a
loader plugin, ``extvisor.documents.models`` for the types).
"""

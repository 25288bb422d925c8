"""The spec: the two document formats and how they are read.

Holds the models of a service file and of an ``ExtensionServiceConfig`` document
(``models``), YAML read as Talos reads it (``yamlio``), loading with positions
(``loader``), ``extvisor validate`` over files (``validate``), the JSON Schema
(``schema``) and findings with FILE:LINE:COL (``findings``).

May import: the plugin-facing modules at the top of ``extvisor`` (``records``,
``plugins``, ``hookspecs``, ``protocols``, ``state``) and nothing else of extvisor.
Plugins may import from here (``extvisor.documents.loader.load_service_text`` for a
loader plugin, ``extvisor.documents.models`` for the types).
"""

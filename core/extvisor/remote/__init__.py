"""Reaching extvisor daemons on other machines, the way talosctl reaches Talos nodes.

What is here: client and server certificates (:mod:`.certs`, needs ``cryptography``),
Talos's roles and which API routes each may call (:mod:`.roles`), the talosconfig-shaped
client file with its contexts (:mod:`.talosconfig`), node and endpoint addresses
(:mod:`.nodes`) and the TLS contexts of both sides (:mod:`.tls`).

Layering: this package imports only the standard library, PyYAML and (in ``certs`` only,
loaded when a certificate is made or read) ``cryptography``; never the server, the client,
the CLI or a runtime. The server and the client import it. Nothing is imported here, so
``import extvisor.remote.roles`` stays cheap for ``extvisor services``.
"""

"""Reaching extvisor daemons on other machines, the way talosctl reaches Talos nodes.

What is here: client and server certificates (:mod:`.certs`, needs ``cryptography``),
Talos's roles and what each access level of the route table needs (:mod:`.roles`), the talosconfig-shaped
client file with its contexts (:mod:`.talosconfig`) and where it is looked for
(:mod:`.where`), node and endpoint addresses (:mod:`.nodes`), the TLS contexts of both sides
(:mod:`.tls`) and what went wrong talking to a node, said for an operator (:mod:`.failures`).

May import: ``extvisor.shared`` (the route table, the private-directory check) and the plugin surface; the standard
library, PyYAML and (in ``certs`` only, loaded when a certificate is made or read)
``cryptography``. Never
``extvisor.oci``, ``extvisor.plugins`` or ``extvisor.documents``, nor any part above (the
server and the client import it). Nothing is imported here, so ``import
extvisor.remote.roles`` stays cheap for ``extvisor services``.
"""

"""Many nodes at once: which daemons a command talks to, and calling them in parallel.

The client talks to every node itself (as talosctl does since Talos 1.13), so no daemon
has to trust another: one TLS connection per node, all opened together. A node's failure is
that node's; the others' answers are still used.

Which daemons: ``-n``/``-e``/``--context``/``--config`` mean nodes from the client
configuration; otherwise ``--socket`` (or ``EXTVISOR_SOCKET``) means the local daemon;
otherwise a configuration whose current context names endpoints or nodes; otherwise the
local socket, as before remote nodes existed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from extvisor.client.http import SOCKET_ENV, Client, ClientError
from extvisor.client.wire import Address
from extvisor.remote.where import config_file as where_config
from extvisor.shared import defaults

if TYPE_CHECKING:
    from extvisor.remote.nodes import Node
    from extvisor.remote.talosconfig import Context

# The rest of extvisor.remote is loaded only when a node is named or a client configuration
# exists: a call against the local socket does not pay for it (docs/performance.md).


# Plain classes, not dataclasses: building a dataclass compiles code, and every CLI call
# pays for it (docs/performance.md).
class Target:
    def __init__(self, node: Node | None, client: Client):
        self.node = node  # None: the local socket
        self.client = client

    @property
    def label(self) -> str:
        return self.node.text if self.node else ""


class Outcome:
    def __init__(self, target: Target, value: Any = None, error: str | None = None):
        self.target = target
        self.value = value
        self.error = error


class Fleet:
    """The daemons of one command. ``remote`` is False for the local socket alone."""

    def __init__(self, targets: list[Target], client_crt: bytes | None = None):
        self.targets = targets
        self.client_crt = client_crt
        self._hint: list[str | None] = []

    @property
    def remote(self) -> bool:
        return self.targets[0].node is not None

    def explain(self, message: str) -> str:
        """Add what is wrong with our own certificate to a refused handshake, once looked up."""
        if not self.remote:
            return message
        from extvisor.remote.failures import REFUSED_HANDSHAKE, certificate_hint

        if REFUSED_HANDSHAKE not in message:
            return message
        if not self._hint:
            self._hint.append(certificate_hint(self.client_crt))
        return f"{message}; {self._hint[0]}" if self._hint[0] else message

    def each(self, call: Callable[[Client], Any]) -> list[Outcome]:
        """``call`` on every daemon at once; outcomes in the nodes' order."""

        def one(t: Target) -> Outcome:
            try:
                return Outcome(t, value=call(t.client))
            except ClientError as exc:
                return Outcome(t, error=self.explain(str(exc)))

        if len(self.targets) == 1:
            return [one(self.targets[0])]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(self.targets), 64)) as pool:
            return list(pool.map(one, self.targets))

    def stream(self, open_stream: Callable[[Client], Iterable[Any]], emit: Callable[[Target, Any], None],
               error: Callable[[Target, str], None]) -> bool:  # fmt: skip
        """Read every daemon's stream at once; each item goes to ``emit`` under one lock, so two
        nodes' output never mixes within an item. A node whose stream fails goes to ``error``
        and the others go on. Returns True when none failed."""
        import threading

        lock = threading.Lock()
        failed: list[Target] = []

        def run(t: Target) -> None:
            try:
                for item in open_stream(t.client):
                    with lock:
                        emit(t, item)
            except ClientError as exc:
                with lock:
                    failed.append(t)
                    error(t, self.explain(str(exc)))

        if len(self.targets) == 1:
            run(self.targets[0])
            return not failed
        threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in self.targets]
        for th in threads:
            th.start()
        for th in threads:
            while th.is_alive():
                th.join(0.2)  # short joins: Ctrl-C still reaches the main thread
        return not failed


def fleet(socket_path: str | None = None, config_file: str | None = None, context: str | None = None,
          nodes: Iterable[str] = (), endpoints: Iterable[str] = (),
          timeout: float = defaults.CLIENT_TIMEOUT) -> Fleet:  # fmt: skip
    """The daemons a command goes to; :class:`ClientError` when that cannot be worked out."""
    named = any(v.strip(", ") for v in (*nodes, *endpoints))
    asked = bool(named or context or config_file)
    if not asked and (socket_path or os.environ.get(SOCKET_ENV) or not os.path.exists(where_config())):
        return Fleet([Target(None, Client(socket_path, timeout=timeout))])
    from extvisor.remote.nodes import AddressError, split_list
    from extvisor.remote.talosconfig import Config, ConfigError, config_path

    nodes, endpoints = split_list(nodes), split_list(endpoints)
    try:
        cfg = Config.load(config_path(config_file))
        if not asked:
            current = cfg.contexts.get(cfg.context)
            if current is None or not (current.endpoints or current.nodes):
                return Fleet([Target(None, Client(socket_path, timeout=timeout))])
        elif cfg.empty and not context:
            where = config_path(config_file)
            raise ClientError(f"no client configuration at {where}: nodes need one with a client certificate "
                              "(`extvisor config new`)")  # fmt: skip
        else:
            current = cfg.current(context)[1]
        return _remote(current, nodes, endpoints, timeout)
    except (ConfigError, AddressError) as exc:
        raise ClientError(str(exc)) from None


def _remote(ctx: Context, nodes: list[str], endpoints: list[str], timeout: float) -> Fleet:
    from extvisor.remote.nodes import resolve
    from extvisor.remote.tls import TLSConfigError, client_context

    ca, crt, key = ctx.ca_pem, ctx.crt_pem, ctx.key_pem
    resolved = resolve(nodes or ctx.nodes, endpoints or ctx.endpoints)  # the flags replace, as in talosctl
    try:
        ssl_context = client_context(ca or None, crt or None, key or None)  # one for every node
    except TLSConfigError as exc:
        raise ClientError(str(exc)) from None
    targets = [Target(n, Client(timeout=timeout, address=Address(host=n.host, port=n.port, ssl=ssl_context)))
               for n in resolved]  # fmt: skip
    return Fleet(targets, client_crt=crt or None)

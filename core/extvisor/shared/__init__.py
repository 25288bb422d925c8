"""What the parts of extvisor agree on, stated once: the API's routes and the defaults.

``routes`` declares each API route (path, method, who may call it, what it takes and what it
answers); the server serves, the role check allows, the client calls and the dashboard
reads from that one table. ``shapes`` checks an answer against a route's declared shape,
cheaply (the client validates every node's answer with it). ``defaults`` holds the
defaults the daemon, dev mode and the client start from (socket path, directories,
timeouts). ``dirs`` is the one check of a directory no other user can change (the state
directory, the store, the instance locks, dev mode's socket directory, key directories).

Light on purpose: the client imports it on every CLI call.

May import: the standard library only.
"""

"""The runc monitor: one small process, outside the daemon, that holds every runc container.

Run as ``python -I -S monitor.py ROOT RUNC``: the standard library only (it must start in a few
milliseconds and run on unchanged while daemons come and go and are upgraded). It is what
conmon is to podman, one for all the containers of a daemon's runc root:

* the child subreaper above each container's init (it runs ``runc run --detach`` itself), so
  it ``waitpid``s the exact exit code or signal, and writes it atomically to the container's
  exit file once the output is complete;
* the reader of each container's one stdout+stderr pipe: every byte is appended to the
  container's output file at once, whether or not a daemon is connected, so a service never
  blocks on a full pipe and never gets EPIPE;
* a server on ``ROOT/monitor.sock`` (JSON lines): ``run`` and ``list`` requests, and to every
  connected daemon ``{"ev": "out", "id": ID}`` after output is appended and
  ``{"ev": "exit", "id": ID, ...}`` after the exit file is written.

It goes away by itself once it holds no container and no daemon has been connected for
``IDLE`` seconds; ``ROOT/monitor.lock`` keeps a second one from starting meanwhile.
"""

import ctypes
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time

VERSION = 1
IDLE = 5.0  # seconds without containers and daemons before the monitor exits
DRAIN = 5.0  # seconds the output may stay open after the init exited (then the exit is written)
READ = 1 << 18
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
PR_SET_CHILD_SUBREAPER = 36


class Container:
    def __init__(self, req, pipe, out):
        self.id = req["id"]
        self.req = req
        self.pipe = pipe  # read end; -1 once at EOF
        self.out = out  # the output file, O_APPEND
        self.pid = 0
        self.status = None  # wait status once reaped
        self.failing = False  # its output file refuses writes (said once)
        self.exited_at = 0.0


class Client:
    def __init__(self):
        self.inbuf = b""
        self.out = b""
        self.later = set()  # containers with output not yet announced (the daemon reads slowly)


class Monitor:
    def __init__(self, root, runc, listener):
        self.root, self.runc, self.listener = root, runc, listener
        self.sel = selectors.DefaultSelector()
        self.clients = {}  # socket -> Client
        self.containers = {}  # id -> Container (running, or ended with output still coming)
        self.launching = {}  # runc pid -> (Container, client socket, request id)
        self.reaped = {}  # pid -> wait status of a process reaped before we knew it (a quick init)
        self.idle_since = time.monotonic()
        r, self.wake = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(self.wake, False)
        signal.set_wakeup_fd(self.wake)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(r, selectors.EVENT_READ, self.on_signal)
        self.sel.register(listener, selectors.EVENT_READ, self.on_accept)

    # -- the loop ---------------------------------------------------------------------

    def serve(self):
        while True:
            for key, _ in self.sel.select(self.timeout()):
                key.data(key.fileobj)
            self.check_drains()
            if self.containers or self.launching or self.clients:
                self.idle_since = time.monotonic()
            elif time.monotonic() - self.idle_since >= IDLE:
                os.unlink(os.path.join(self.root, "monitor.sock"))
                return

    def timeout(self):
        ends = [c.exited_at + DRAIN for c in self.containers.values() if c.status is not None]
        if not (self.containers or self.launching or self.clients):
            ends.append(self.idle_since + IDLE)
        return max(0.0, min(ends) - time.monotonic()) if ends else None

    # -- daemons ----------------------------------------------------------------------

    def on_accept(self, listener):
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.clients[conn] = Client()
        self.sel.register(conn, selectors.EVENT_READ, self.on_ready)
        self.send(conn, {"ev": "hello", "version": VERSION, "pid": os.getpid()})

    def drop(self, conn):
        self.sel.unregister(conn)
        self.clients.pop(conn, None)
        conn.close()

    def send(self, conn, msg):
        client = self.clients.get(conn)
        if client is not None:
            client.out += json.dumps(msg).encode() + b"\n"
            self.flush(conn, client)

    def broadcast(self, msg):
        for conn in list(self.clients):
            self.send(conn, msg)

    def output(self, cid):
        """Tell every daemon that output was appended: a hint, sent once per burst to a slow daemon
        (a daemon that does not read must never stop the monitor, which would stop the services)."""
        for conn, client in list(self.clients.items()):
            if len(client.out) > 65536:
                client.later.add(cid)
            else:
                self.send(conn, {"ev": "out", "id": cid})

    def flush(self, conn, client):
        try:
            while client.out:
                client.out = client.out[conn.send(client.out):]
        except BlockingIOError:
            pass
        except OSError:
            self.drop(conn)
            return
        if not client.out and client.later:
            later, client.later = client.later, set()
            for cid in later:
                client.out += json.dumps({"ev": "out", "id": cid}).encode() + b"\n"
            return self.flush(conn, client)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self.sel.modify(conn, events, self.on_ready)

    def on_ready(self, conn):
        client = self.clients.get(conn)
        if client is None:
            return
        if client.out:
            self.flush(conn, client)
            if conn not in self.clients:
                return
        self.on_request(conn)

    def on_request(self, conn):
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        client = self.clients[conn]
        *lines, client.inbuf = (client.inbuf + data).split(b"\n")
        for line in lines:
            try:
                req = json.loads(line)
                op = req["op"]
            except (ValueError, KeyError, TypeError):
                continue
            if op == "run":
                self.run(conn, req)
            elif op == "list":
                running = {c.id: c.pid for c in self.containers.values() if c.status is None and c.pid}
                self.send(conn, {"rid": req.get("rid"), "containers": running})

    # -- containers -------------------------------------------------------------------

    def run(self, conn, req):
        rid, cid = req.get("rid"), req["id"]
        old = self.containers.get(cid)
        if old is not None:  # a run just removed (killed by runc delete): finish it first
            self.reap()
            if old.status is None:
                self.send(conn, {"rid": rid, "error": "the monitor still holds a running container " + cid})
                return
            if old.pipe >= 0:
                self.sel.unregister(old.pipe)
                os.close(old.pipe)
                old.pipe = -1
            self.maybe_done(old)
        pipe = out = -1
        try:
            for path in (req["exit"], req["exit"] + ".tmp"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            out = os.open(req["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
            pipe, write = os.pipe()
            try:
                fcntl.fcntl(write, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
            argv = [self.runc, "--root", req["root"], "--log", req["runc_log"], "--log-format", "json",
                    "run", "--detach", "--bundle", req["bundle"], "--pid-file", req["pid_file"], cid]
            try:
                pid = os.posix_spawn(self.runc, argv, os.environ, file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, write, 1), (os.POSIX_SPAWN_DUP2, write, 2)], setsigdef=(signal.SIGPIPE,))
            finally:
                os.close(write)  # EOF must come when the container's last process exits
        except (OSError, KeyError) as exc:
            for fd in (pipe, out):
                if fd >= 0:
                    os.close(fd)
            self.send(conn, {"rid": rid, "error": f"cannot run runc: {exc}"})
            return
        c = Container(req, pipe, out)
        self.containers[cid] = c
        self.launching[pid] = (c, conn, rid)
        os.set_blocking(pipe, False)
        self.sel.register(pipe, selectors.EVENT_READ, lambda _f, c=c: self.on_output(c))

    def on_output(self, c):
        try:
            data = os.read(c.pipe, READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(c.pipe)
            os.close(c.pipe)
            c.pipe = -1
            self.maybe_done(c)
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(c.out, view):]
            except OSError as exc:  # a full disk: this output is lost, the service goes on
                if not c.failing:
                    print(f"{c.id}: writing its output failed: {exc}", file=sys.stderr, flush=True)
                c.failing = True
                break
        else:
            c.failing = False
        self.output(c.id)

    def on_signal(self, fd):
        try:
            while os.read(fd, 512):
                pass
        except OSError:
            pass
        self.reap()

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.on_reaped(pid, status)

    def on_reaped(self, pid, status):
        launch = self.launching.pop(pid, None)
        if launch is not None:
            c, conn, rid = launch
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                self.forget(c)
                said = b""
                if c.pipe >= 0:
                    try:
                        said = os.read(c.pipe, READ)
                    except OSError:
                        pass
                    self.sel.unregister(c.pipe)
                    os.close(c.pipe)
                os.close(c.out)
                self.send(conn, {"rid": rid, "error": "", "rc": code, "said": said.decode(errors="replace")})
                return
            try:
                with open(c.req["pid_file"]) as f:
                    c.pid = int(f.read().strip())
            except (OSError, ValueError) as exc:
                self.send(conn, {"rid": rid, "error": f"runc left no pid file: {exc}"})
                c.status = 255 << 8
                c.exited_at = time.monotonic()
                return
            self.send(conn, {"rid": rid, "id": c.id, "pid": c.pid})
            if c.pid in self.reaped:  # it ended before runc did
                self.on_reaped(c.pid, self.reaped.pop(c.pid))
            return
        for c in self.containers.values():
            if c.pid == pid and c.status is None:
                c.status, c.exited_at = status, time.monotonic()
                self.maybe_done(c)
                return
        if self.launching:  # perhaps the init of a run whose runc has not been reaped yet
            self.reaped[pid] = status
            while len(self.reaped) > 1024:
                self.reaped.pop(next(iter(self.reaped)))

    def check_drains(self):
        now = time.monotonic()
        for c in list(self.containers.values()):
            if c.status is not None and now - c.exited_at >= DRAIN:
                if c.pipe >= 0:  # a process outside the init's namespace holds the pipe: stop reading
                    self.sel.unregister(c.pipe)
                    os.close(c.pipe)
                    c.pipe = -1
                self.maybe_done(c)

    def maybe_done(self, c):
        """The init is reaped and its output complete: write the exit file, tell the daemons."""
        if c.status is None or c.pipe >= 0 or c.id not in self.containers:
            return
        self.forget(c)
        os.close(c.out)
        if os.WIFSIGNALED(c.status):
            result = {"signal": os.WTERMSIG(c.status)}
        else:
            result = {"code": os.WEXITSTATUS(c.status)}
        result["pid"] = c.pid
        path = c.req["exit"]
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(result, f)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            print(f"{c.id}: cannot write its exit status to {path}: {exc}", file=sys.stderr, flush=True)
        self.broadcast(dict(result, ev="exit", id=c.id))

    def forget(self, c):
        if self.containers.get(c.id) is c:
            del self.containers[c.id]


def main(argv):
    root, runc = argv[1], argv[2]
    lock = os.open(os.path.join(root, "monitor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Another monitor is going away (idle) or another daemon just started one.
        path = os.path.join(root, "monitor.sock")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            return 0  # it answers: that one serves
        except OSError:
            fcntl.flock(lock, fcntl.LOCK_EX)  # it is exiting: wait for it
        finally:
            probe.close()
    path = os.path.join(root, "monitor.sock")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(64)
    # Bound and listening: the daemon may connect now. The parent exits to say so, and the
    # monitor is nobody's child but the next subreaper's (it outlives the daemon).
    if os.fork() != 0:
        os._exit(0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(ctypes.get_errno()), file=sys.stderr, flush=True)
        return 1
    listener.setblocking(False)
    monitor = Monitor(root, runc, listener)
    print(f"monitor {os.getpid()} serving {path}", file=sys.stderr, flush=True)
    monitor.serve()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except OSError as exc:
        if exc.errno != errno.EINTR:
            print(f"monitor: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)

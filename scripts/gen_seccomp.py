"""Generate core/extvisor/oci/seccomp_default.json from containerd's own source.

Talos applies containerd's default seccomp profile last (``seccomp.WithDefaultProfile()``),
and the profile depends on the process capabilities. Its source of truth is the Go function
``DefaultProfile`` in ``contrib/seccomp/seccomp_default.go``; this script reads that file
from Debian's golang-github-containerd-containerd-dev (the package the gRPC protos come
from, see plugins/containerd/vendor_protos.py) and writes the same rules as data:

    python scripts/gen_seccomp.py             # apt-get download + dpkg-deb -x, then generate
    python scripts/gen_seccomp.py --src DIR   # DIR = an extracted tree (usr/share/gocode/src)

The JSON keeps the function's parts apart: the base rules, the rules by kernel version,
by architecture, by capability, and those for a process without CAP_SYS_ADMIN.
``extvisor.oci.seccomp.default_profile`` puts them together as ``DefaultProfile`` does.
Run by hand when moving to another containerd; the result is committed. A change in the
shape of the Go function stops the script with the line it did not understand.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "core/extvisor/oci/seccomp_default.json"
DEB = "golang-github-containerd-containerd-dev"
GO_FILE = "github.com/containerd/containerd/contrib/seccomp/seccomp_default.go"

# Kernel ABI constants the Go file names through golang.org/x/sys/unix (linux/sched.h).
UNIX = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}  # fmt: skip
ACTIONS = {"ActKill": "SCMP_ACT_KILL", "ActTrap": "SCMP_ACT_TRAP", "ActErrno": "SCMP_ACT_ERRNO",
           "ActTrace": "SCMP_ACT_TRACE", "ActAllow": "SCMP_ACT_ALLOW", "ActLog": "SCMP_ACT_LOG"}  # fmt: skip
OPS = {"OpNotEqual": "SCMP_CMP_NE", "OpLessThan": "SCMP_CMP_LT", "OpLessEqual": "SCMP_CMP_LE",
       "OpEqualTo": "SCMP_CMP_EQ", "OpGreaterEqual": "SCMP_CMP_GE", "OpGreaterThan": "SCMP_CMP_GT",
       "OpMaskedEqual": "SCMP_CMP_MASKED_EQ"}  # fmt: skip

TOKEN = re.compile(
    r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|0[xX][0-9a-fA-F]+|\d+'
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|:=|\n|[{}\[\](),:|&=!;]|[^\s]",
    re.S,
)


class GoError(ValueError):
    pass


class Parser:
    """A reader for the small part of Go that seccomp_default.go uses."""

    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, int]] = []
        line = 1
        for m in TOKEN.finditer(text):
            tok = m.group()
            if not tok.startswith(("//", "/*")):
                self.toks.append((tok, line))
            line += tok.count("\n")
        self.pos = 0

    def peek(self, skip_nl: bool = True) -> str:
        while skip_nl and self.pos < len(self.toks) and self.toks[self.pos][0] == "\n":
            self.pos += 1
        return self.toks[self.pos][0] if self.pos < len(self.toks) else ""

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if want is not None and tok != want:
            raise GoError(f"{GO_FILE}:{self.toks[self.pos][1]}: expected {want!r}, found {tok!r}")
        self.pos += 1
        return tok

    def seek_func(self, name: str) -> None:
        for i, (tok, _) in enumerate(self.toks):
            if tok == "func" and self.toks[i + 1][0] == name:
                self.pos = i
                while self.take() != ")":  # the parameters
                    pass
                while self.peek() != "{":  # the result type
                    self.take()
                return
        raise GoError(f"{GO_FILE}: no func {name}")

    def header(self) -> list[str]:
        """Tokens up to the block's '{' (braces inside parentheses belong to the header)."""
        out, depth = [], 0
        while not (self.peek() == "{" and depth == 0):
            tok = self.take()
            depth += (tok in "([{") - (tok in ")]}") if len(tok) == 1 else 0
            out.append(tok)
        return out

    def block(self) -> list[tuple]:
        self.take("{")
        stmts = []
        while self.peek() not in ("}", "case", "default"):
            if self.peek() == ";":
                self.take()
                continue
            stmts.append(self.statement())
        if self.peek() == "}":
            self.take()
        return stmts

    def statement(self) -> tuple:
        tok = self.peek()
        if tok in ("if", "for"):
            self.take()
            head = self.header()
            body = self.block()
            return (tok, head, body)
        if tok == "switch":
            self.take()
            head = self.header()
            self.take("{")
            cases = []
            while self.peek() != "}":
                if self.take() == "case":
                    labels = [json.loads(t) for t in self._until(":") if t != ","]
                else:
                    self.take(":")
                    labels = None  # default
                body = []
                while self.peek() not in ("case", "default", "}"):
                    body.append(self.statement())
                cases.append((labels, body))
            self.take("}")
            return ("switch", head, cases)
        if tok == "return":
            self.take()
            return ("return", self.expr())
        target = self.take()
        op = self.take()
        if op not in ("=", ":="):
            raise GoError(f"{GO_FILE}:{self.toks[self.pos - 1][1]}: unexpected {op!r} after {target!r}")
        return ("set", target, self.expr())

    def _until(self, stop: str) -> list[str]:
        out = []
        while self.peek() != stop:
            out.append(self.take())
        self.take(stop)
        return out

    def expr(self) -> Any:
        parts = [self.operand()]
        while self.peek(skip_nl=False) == "|":
            self.take()
            parts.append(self.operand())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def operand(self) -> Any:
        tok = self.take()
        if tok in ("&", "!"):
            return (tok, self.operand())
        if tok.startswith('"'):
            return json.loads(tok)
        if tok[0].isdigit():
            return int(tok, 0)
        if tok == "[":
            self.take("]")
            self.take()  # the element type
            return self.composite()
        if tok == "{":
            self.pos -= 1
            return self.composite()
        if self.peek(skip_nl=False) == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.expr())
                if self.peek() == ",":
                    self.take()
            self.take(")")
            return ("call", tok, args)
        if self.peek(skip_nl=False) == "{":
            return self.composite()  # a typed composite literal: the type is not needed
        return ("name", tok)

    def composite(self) -> Any:
        self.take("{")
        items: list[Any] = []
        fields: dict[str, Any] = {}
        while self.peek() != "}":
            if self.toks[self.pos + 1][0] == ":" and self.peek() != "{":
                key = self.take()
                self.take(":")
                fields[key] = self.expr()
            else:
                items.append(self.expr())
            if self.peek() == ",":
                self.take()
        self.take("}")
        return fields if fields else items


def _name(value: Any) -> str:
    if not (isinstance(value, tuple) and value[0] == "name"):
        raise GoError(f"expected a name, found {value!r}")
    return value[1].rsplit(".", 1)[-1]


def _int(value: Any, env: dict[str, Any]) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value[0] == "or":
        out = 0
        for part in value[1]:
            out |= _int(part, env)
        return out
    if isinstance(value, tuple) and value[0] == "&":
        return _int(value[1], env)
    if isinstance(value, tuple) and value[0] == "call" and value[1] == "uint":
        return _int(value[2][0], env)
    name = value[1]
    if name in env:
        return _int(env[name], env)
    short = name.removeprefix("unix.")
    if short in UNIX:
        return UNIX[short]
    if short.startswith("E") and hasattr(errno, short):
        return getattr(errno, short)
    raise GoError(f"unknown constant {name}")


def _syscall(lit: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"names": list(lit["Names"]), "action": ACTIONS[_name(lit["Action"])]}
    args = []
    for a in lit.get("Args") or []:
        arg = {"index": _int(a["Index"], env), "value": _int(a["Value"], env)}
        arg["valueTwo"] = _int(a.get("ValueTwo", 0), env)
        arg["op"] = OPS[_name(a["Op"])]
        args.append(arg)
    if args:
        out["args"] = args
    if "ErrnoRet" in lit:
        out["errnoRet"] = _int(lit["ErrnoRet"], env)
    return out


def _appended(stmts: list[tuple], env: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules of every ``s.Syscalls = append(s.Syscalls, ...)`` among *stmts*."""
    out = []
    for st in stmts:
        if st[0] == "set" and st[1] == "s.Syscalls":
            _, fn, args = st[2]
            if fn != "append":
                raise GoError(f"s.Syscalls set by {fn}")
            out += [_syscall(a, env) for a in args[1:]]
    return out


def _arch_cases(cases: list[tuple], env: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for labels, body in cases:
        for label in labels or ["default"]:
            out[label] = _appended(body, env)
    return out


def generate(text: str, source: str) -> dict[str, Any]:
    p = Parser(text)
    p.seek_func("arches")
    [(kind, head, cases)] = p.block()
    if kind != "switch" or head != ["runtime.GOARCH"]:
        raise GoError("arches(): expected a switch on runtime.GOARCH")
    arches = {}
    for labels, body in cases:
        [(_, value)] = body
        names = ["SCMP_ARCH_" + _name(v).removeprefix("Arch").upper() for v in value]
        for label in labels or ["default"]:
            arches[label] = names

    p.seek_func("DefaultProfile")
    env: dict[str, Any] = {}
    result: dict[str, Any] = {"source": source, "architectures": arches}
    for st in p.block():
        if st[0] == "set" and st[1] == "syscalls":
            result["syscalls"] = [_syscall(lit, env) for lit in st[2]]
        elif st[0] == "set" and st[1] == "s":
            result["defaultAction"] = ACTIONS[_name(st[2][1]["DefaultAction"])]
        elif st[0] == "set" and st[1] != "admin":
            env[st[1]] = st[2]
        elif st[0] == "set":
            pass  # admin := false; the capability that sets it is found below
        elif st[0] == "if" and "kernelversion.GreaterEqualThan" in st[1]:
            head = st[1]
            version = [int(head[head.index(k) + 2]) for k in ("Kernel", "Major")]
            [(_, _, inner)] = st[2]
            result["byKernel"] = [{"atLeast": version, "syscalls": _appended(inner, env)}]
        elif st[0] == "switch" and st[1] == ["runtime.GOARCH"]:
            result["byArch"] = _arch_cases(st[2], env)
        elif st[0] == "for":
            [(kind, _, cases)] = st[2]
            caps = {}
            for labels, body in cases:
                for cap in labels:
                    caps[cap] = _appended(body, env)
                    if any(s[0] == "set" and s[1] == "admin" for s in body):
                        result["adminCapability"] = cap
            result["byCapability"] = caps
        elif st[0] == "if" and st[1] == ["!", "admin"]:
            by_arch = {}
            for inner in st[2]:
                if inner[0] == "switch":
                    by_arch = _arch_cases(inner[2], env)
            result["withoutAdmin"] = {"byArch": by_arch, "always": _appended(st[2], env)}
        elif st[0] == "return":
            pass
        else:
            raise GoError(f"DefaultProfile: a statement this script does not know: {st[:2]!r}")
    for key in ("syscalls", "defaultAction", "byArch", "byCapability", "adminCapability", "withoutAdmin"):
        if key not in result:
            raise GoError(f"DefaultProfile: found no {key}")
    return result


def download(tmp: Path) -> tuple[Path, str]:
    tmp.chmod(0o755)  # apt's _apt user downloads into it
    subprocess.run(["apt-get", "download", DEB], cwd=tmp, check=True)
    [deb] = sorted(tmp.glob("*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], check=True)
    return tmp / "x", "containerd " + deb.name.split("_")[1].replace("%7e", "~")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="an extracted tree holding usr/share/gocode/src")
    parser.add_argument("--version", default="", help="the containerd version, recorded in the JSON")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, version = (args.src, args.version) if args.src else download(Path(tmp))
        text = (src / "usr/share/gocode/src" / GO_FILE).read_text()
    source = f"{GO_FILE.split('containerd/containerd/')[1]} of {args.version or version or 'containerd'} ({DEB})"
    data = generate(text, source)
    args.output.write_text(json.dumps(data, indent=1) + "\n")
    n = len(data["syscalls"])
    print(f"wrote {args.output}: {n} base rules, {len(data['byCapability'])} capabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A port of blang/semver v4.0.0 (``Parse``, ``ParseTolerant``, ``ParseRange``), which Talos uses
for ``compatibility.talos.version``.

Python's semver packages accept a different grammar (no ``!``, no ``||`` without spaces, other
wildcards), so this follows blang's Go code line by line, quirks included: ``splitAndTrim``
drops parts one character long, any part holding an ``x`` goes through wildcard expansion, and
the error texts are blang's. Go's byte-wise string functions are matched where it matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NUMBERS = "0123456789"
ALPHAS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
ALPHANUM = ALPHAS + NUMBERS
MAX_UINT64 = 2**64 - 1


class SemverError(ValueError):
    """A version or range blang/semver refuses; ``str()`` is blang's message."""


def _go_q(s: str) -> str:
    """Go's ``%q`` for the strings seen here (printable ASCII and escapes)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _contains_only(s: str, chars: str) -> bool:
    return all(c in chars for c in s)


def _leading_zeroes(s: str) -> bool:
    return len(s) > 1 and s[0] == "0"


def _parse_uint(s: str) -> int:
    """Go's ``strconv.ParseUint(s, 10, 64)`` for a string of ASCII digits."""
    if s == "":
        raise SemverError('strconv.ParseUint: parsing "": invalid syntax')
    value = int(s)
    if value > MAX_UINT64:
        raise SemverError(f"strconv.ParseUint: parsing {_go_q(s)}: value out of range")
    return value


@dataclass(frozen=True)
class PRVersion:
    """One dot-separated part of a pre-release."""

    text: str = ""
    num: int = 0
    is_num: bool = False

    def compare(self, o: PRVersion) -> int:
        if self.is_num and not o.is_num:
            return -1
        if not self.is_num and o.is_num:
            return 1
        a, b = (self.num, o.num) if self.is_num else (self.text.encode(), o.text.encode())
        return 0 if a == b else (1 if a > b else -1)

    def __str__(self) -> str:
        return str(self.num) if self.is_num else self.text


def new_pr_version(s: str) -> PRVersion:
    if not s:
        raise SemverError("Prerelease is empty")
    if _contains_only(s, NUMBERS):
        if _leading_zeroes(s):
            raise SemverError(f"Numeric PreRelease version must not contain leading zeroes {_go_q(s)}")
        return PRVersion(num=_parse_uint(s), is_num=True)
    if _contains_only(s, ALPHANUM):
        return PRVersion(text=s)
    raise SemverError(f"Invalid character(s) found in prerelease {_go_q(s)}")


@dataclass(frozen=True)
class Version:
    major: int = 0
    minor: int = 0
    patch: int = 0
    pre: tuple[PRVersion, ...] = ()
    build: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            s += "-" + ".".join(str(p) for p in self.pre)
        if self.build:
            s += "+" + ".".join(self.build)
        return s

    def core(self) -> Version:
        """Major.Minor.Patch only, as Talos's ``coreVersion``."""
        return Version(self.major, self.minor, self.patch)

    def compare(self, o: Version) -> int:
        for a, b in ((self.major, o.major), (self.minor, o.minor), (self.patch, o.patch)):
            if a != b:
                return 1 if a > b else -1
        if not self.pre and not o.pre:
            return 0
        if not self.pre:
            return 1
        if not o.pre:
            return -1
        for a, b in zip(self.pre, o.pre):  # noqa: B905 - Go stops at the shorter one
            c = a.compare(b)
            if c:
                return c
        if len(self.pre) == len(o.pre):
            return 0
        return -1 if len(self.pre) < len(o.pre) else 1


def parse(s: str) -> Version:
    """blang ``Parse``: strict ``X.Y.Z[-pre][+build]``."""
    if not s:
        raise SemverError("Version string empty")
    parts = s.split(".", 2)
    if len(parts) != 3:
        raise SemverError("No Major.Minor.Patch elements found")
    nums = []
    for label, part in (("major", parts[0]), ("minor", parts[1])):
        if not _contains_only(part, NUMBERS):
            raise SemverError(f"Invalid character(s) found in {label} number {_go_q(part)}")
        if _leading_zeroes(part):
            raise SemverError(f"{label.capitalize()} number must not contain leading zeroes {_go_q(part)}")
        nums.append(_parse_uint(part))
    patch_str = parts[2]
    build: list[str] = []
    pre: list[str] = []
    if "+" in patch_str:
        i = patch_str.index("+")
        build = patch_str[i + 1 :].split(".")
        patch_str = patch_str[:i]
    if "-" in patch_str:
        i = patch_str.index("-")
        pre = patch_str[i + 1 :].split(".")
        patch_str = patch_str[:i]
    if not _contains_only(patch_str, NUMBERS):
        raise SemverError(f"Invalid character(s) found in patch number {_go_q(patch_str)}")
    if _leading_zeroes(patch_str):
        raise SemverError(f"Patch number must not contain leading zeroes {_go_q(patch_str)}")
    patch = _parse_uint(patch_str)
    prs = tuple(new_pr_version(p) for p in pre)
    for b in build:
        if not b:
            raise SemverError("Build meta data is empty")
        if not _contains_only(b, ALPHANUM):
            raise SemverError(f"Invalid character(s) found in build meta data {_go_q(b)}")
    return Version(nums[0], nums[1], patch, prs, tuple(build))


def parse_tolerant(s: str) -> Version:
    """blang ``ParseTolerant``: trims spaces and a ``v``, fills ``1.2`` to ``1.2.0``, drops leading zeros."""
    s = s.strip(" \t\n\v\f\r")
    s = s.removeprefix("v")
    parts = s.split(".", 2)
    for i, p in enumerate(parts):
        if len(p) > 1:
            p = p.lstrip("0")
            if not p or p[0] not in NUMBERS:
                p = "0" + p
            parts[i] = p
    if len(parts) < 3:
        if any(c in "+-" for c in parts[-1]):
            raise SemverError("Short version cannot contain PreRelease/Build meta data")
        parts += ["0"] * (3 - len(parts))
    return parse(".".join(parts))


Range = Callable[[Version], bool]

_COMPARATORS: dict[str, Callable[[int], bool]] = {
    "": lambda c: c == 0,
    "=": lambda c: c == 0,
    "==": lambda c: c == 0,
    ">": lambda c: c == 1,
    ">=": lambda c: c >= 0,
    "<": lambda c: c == -1,
    "<=": lambda c: c <= 0,
    "!": lambda c: c != 0,
    "!=": lambda c: c != 0,
}


def _split_and_trim(s: str) -> list[str]:
    """blang ``splitAndTrim``: split on spaces not following an operator, drop 1-char parts."""
    result: list[str] = []
    last = 0
    last_char = ""
    for i, ch in enumerate(s):
        if ch == " " and last_char not in (">", "<", "="):
            if last < i - 1:
                result.append(s[last:i])
            last = i + 1
        elif ch != " ":
            last_char = ch
    if last < len(s) - 1:
        result.append(s[last:])
    return [r.replace(" ", "") for r in result]


def _split_or_parts(parts: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    last = 0
    for i, p in enumerate(parts):
        if p == "||":
            if i == 0:
                raise SemverError("First element in range is '||'")
            out.append(parts[last:i])
            last = i + 1
    if last == len(parts):
        raise SemverError("Last element in range is '||'")
    out.append(parts[last:])
    return out


def _split_comparator_version(s: str) -> tuple[str, str]:
    for i, ch in enumerate(s):
        if ch.isdecimal():  # Go's unicode.IsDigit: category Nd
            return s[:i].strip(), s[i:]
    raise SemverError(f"Could not get version from string: {_go_q(s)}")


def _wildcard_type(v: str) -> int:
    parts = v.split(".")
    return len(parts) if parts[-1] == "x" and len(parts) in (1, 2, 3) else 0


def _flat_wildcard(v: str) -> str:
    v2 = v.replace(".x.x", ".x", 1).replace(".x", ".0", 1)
    return v2 + ".0" if len(v2.split(".")) == 2 else v2


def _increment(v: str, index: int) -> str:
    """Go's ``incrementMajorVersion``/``incrementMinorVersion``; an Atoi error gives ``""``."""
    parts = v.split(".")
    digits = parts[index].lstrip("+-") if index < len(parts) else ""
    if not digits or not _contains_only(digits, NUMBERS) or len(parts[index]) - len(digits) > 1:
        return ""
    parts[index] = str(int(parts[index], 10) + 1)
    return ".".join(parts)


def _expand_wildcards(or_parts: list[list[str]]) -> list[list[str]]:
    expanded = []
    for p in or_parts:
        new: list[str] = []
        for ap in p:
            if "x" in ap:
                op, v = _split_comparator_version(ap)
                kind = _wildcard_type(v)
                flat = _flat_wildcard(v)
                result_op, bump = "", False
                if op == ">":
                    result_op, bump = ">=", True
                elif op == ">=":
                    result_op = ">="
                elif op == "<":
                    result_op = "<"
                elif op == "<=":
                    result_op, bump = "<", True
                elif op in ("", "=", "=="):
                    new.append(">=" + flat)
                    result_op, bump = "<", True
                elif op in ("!=", "!"):
                    new.append("<" + flat)
                    result_op, bump = ">=", True
                if bump:
                    version = _increment(flat, 1) if kind == 3 else _increment(flat, 0) if kind == 2 else ""
                else:
                    version = flat
                ap = result_op + version
            new.append(ap)
        expanded.append(new)
    return expanded


def _version_range(op: str, v: str) -> Range:
    if op not in _COMPARATORS:
        raise SemverError(f"Could not parse comparator {_go_q(op)} in {_go_q(op + v)}")
    try:
        bound = parse(v)
    except SemverError as exc:
        raise SemverError(f"Could not parse version {_go_q(v)} in {_go_q(op + v)}: {exc}") from None
    test = _COMPARATORS[op]
    return lambda version: test(version.compare(bound))


def parse_range(s: str) -> Range:
    """blang ``ParseRange``: space is AND, ``||`` is OR (AND binds tighter), wildcards ``1.x``."""
    or_parts = _expand_wildcards(_split_or_parts(_split_and_trim(s)))
    alternatives: list[list[Range]] = []
    for part in or_parts:
        ands = []
        for ap in part:
            op, v = _split_comparator_version(ap)
            try:
                ands.append(_version_range(op, v))
            except SemverError as exc:
                raise SemverError(f"Could not parse Range {_go_q(ap)}: {exc}") from None
        alternatives.append(ands)
    return lambda version: any(all(r(version) for r in ands) for ands in alternatives)

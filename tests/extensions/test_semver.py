"""The blang/semver v4 port, against blang's own range tests, and references."""

from __future__ import annotations

import pytest

from extvisor.extensions import RefError, parse_ref
from extvisor.extensions.manifest import trim
from extvisor.extensions.semver import SemverError, _split_and_trim, parse, parse_range, parse_tolerant

# (range, version, expected) from blang/semver v4 range_test.go TestParseRange / TestExpandWildcardVersion
RANGES = [
    (">1.2.2 <1.2.4", "1.2.3", True),
    (">1.2.2 <1.2.4", "1.2.4", False),
    (">1.2.2 <1.2.4 || >=2.0.0", "2.0.0", True),
    (">1.2.2 <1.2.4 || >=2.0.0", "1.3.0", False),
    ("1.2.3", "1.2.3", True),
    ("=1.2.3", "1.2.3", True),
    ("==1.2.3", "1.2.4", False),
    ("!1.2.3", "1.2.3", False),
    ("!=1.2.3", "1.2.4", True),
    (">= 1.2.3", "1.2.3", True),
    ("<  1.2.3", "1.2.2", True),
    (">1.0.0 <2.0.0 || >3.0.0 !4.2.1", "4.2.1", False),
    (">1.0.0 <2.0.0 || >3.0.0 !4.2.1", "3.1.1", True),
    ("1.2.x", "1.2.9", True),
    ("1.2.x", "1.3.0", False),
    ("1.x", "1.9.9", True),
    ("1.x", "2.0.0", False),
    (">=1.2.x", "1.2.0", True),
    ("<=1.2.x", "1.2.99", True),
    ("<=1.2.x", "1.3.0", False),
    (">1.2.x", "1.2.5", False),
    (">1.2.x", "1.3.0", True),
    ("<1.2.x", "1.1.9", True),
    ("!=1.2.x", "1.2.3", False),
    ("!=1.2.x", "1.3.0", False),  # blang expands to "<1.2.0 >=1.3.0" (AND): never true
    (">= 1.9.0-alpha.0", "1.12.11", True),
    (">=1.0.0-alpha", "1.0.0-alpha.1", True),
    ("<1.0.0-beta", "1.0.0-alpha.beta", True),
]


@pytest.mark.parametrize(("rng", "version", "expected"), RANGES)
def test_ranges(rng, version, expected):
    assert parse_range(rng)(parse(version)) is expected


@pytest.mark.parametrize(
    ("rng", "message"),
    [
        ("", "Last element in range is '||'"),
        ("|| 1.0.0", "First element in range is '||'"),
        (">1.0.0 ||", "Last element in range is '||'"),
        (">>1.0.0", 'Could not parse Range ">>1.0.0": Could not parse comparator ">>" in ">>1.0.0"'),
        (">=1.0", 'Could not parse Range ">=1.0": Could not parse version "1.0" in ">=1.0": No Major.Minor.Patch elements found'),
        ("bogus", 'Could not get version from string: "bogus"'),
        (">=01.0.0", 'Could not parse Range ">=01.0.0": Could not parse version "01.0.0" in ">=01.0.0": '
                     'Major number must not contain leading zeroes "01"'),
    ],
)  # fmt: skip
def test_range_errors_in_blangs_words(rng, message):
    with pytest.raises(SemverError) as err:
        parse_range(rng)
    assert str(err.value) == message


def test_split_and_trim_quirks():
    assert _split_and_trim("  >=   1.2.3   <=  1.2.3   ") == [">=1.2.3", "<=1.2.3"]
    assert _split_and_trim("1.2.3 || >=1.2.3 <1.2.3") == ["1.2.3", "||", ">=1.2.3", "<1.2.3"]
    assert _split_and_trim("1.2.3 4") == ["1.2.3"]  # blang drops a last part of one character


def test_tolerant_and_compare():
    assert str(parse_tolerant(" v1.12 ")) == "1.12.0"
    assert str(parse_tolerant("v01.02.03")) == "1.2.3"
    assert parse("1.0.0-alpha").compare(parse("1.0.0")) == -1
    assert parse("1.0.0-alpha.1").compare(parse("1.0.0-alpha.beta")) == -1
    assert parse("1.0.0+build.1").compare(parse("1.0.0")) == 0
    with pytest.raises(SemverError, match="Short version cannot contain PreRelease/Build meta data"):
        parse_tolerant("1.2-beta")


def test_talos_trim():
    assert trim(">= v1.0.0") == ">= 1.0.0"
    assert trim(">=v1.0.0 <v2.0.0") == ">=1.0.0 <2.0.0"
    assert trim("vv1") == "v1"  # Go's loop skips the character after a deletion


@pytest.mark.parametrize(
    ("text", "transport", "skopeo"),
    [
        ("ghcr.io/siderolabs/tailscale:1.94.2", "docker", "docker://ghcr.io/siderolabs/tailscale:1.94.2"),
        ("127.0.0.1:5000/x/y:1", "docker", "docker://127.0.0.1:5000/x/y:1"),
        ("docker://h/r@sha256:" + "a" * 64, "docker", "docker://h/r@sha256:" + "a" * 64),
        ("oci:/layout:tag", "oci", "oci:/layout:tag"),
        ("oci-archive:/x.tar", "oci-archive", "oci-archive:/x.tar"),
        ("docker-archive:/x.tar", "docker-archive", "docker-archive:/x.tar"),
        ("tarball:/x.tar", "tarball", "tarball:/x.tar"),
    ],
)
def test_refs(text, transport, skopeo):
    ref = parse_ref(text)
    assert (ref.transport, ref.skopeo(), str(ref)) == (transport, skopeo, text)


def test_ref_relative_paths_and_errors():
    assert parse_ref("oci:lay:v1").absolute("/w").skopeo() == "oci:/w/lay:v1"
    assert parse_ref("tarball:a/b.tar").absolute("/w").path == "/w/a/b.tar"
    for bad, message in [("", "empty"), ("dir:/x", "unsupported transport 'dir'"), ("docker://h/r@sha256:12", "digest"),
                         ("oci:", "needs a path")]:  # fmt: skip
        with pytest.raises(RefError, match=message):
            parse_ref(bad)

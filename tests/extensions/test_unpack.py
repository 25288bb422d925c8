"""Applying layers: whiteouts, links, owners, and every way out of the extension refused."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from extensions.images import Entry, directory, file, gz, hardlink, sha, symlink, tar_bytes

from extvisor.extensions.unpack import Layer, UnpackError, apply_layers, verify_blob


def layers_of(tmp: Path, *entry_lists: list[Entry], digests: bool = True) -> list[Layer]:
    out = []
    for i, entries in enumerate(entry_lists, 1):
        blob = gz(tar_bytes(entries))
        path = tmp / f"layer{i}.tgz"
        path.write_bytes(blob)
        out.append(Layer(path, sha(blob) if digests else "", len(blob) if digests else -1, label=f"layer {i}"))
    return out


@pytest.fixture
def box(tmp_path: Path):
    """A root to unpack into, beside a sentinel dir that must never change."""
    root = tmp_path / "box" / "image"
    root.mkdir(parents=True)
    outside = tmp_path / "box" / "outside"
    outside.mkdir()
    (outside / "keep").write_text("untouched")
    return root, outside


def snapshot(path: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            out[str(p.relative_to(path))] = p.read_text() if p.is_file() and not p.is_symlink() else "dir"
    return out


def test_two_layers_with_both_whiteouts(tmp_path, box):
    root, _ = box
    lower = [directory("rootfs"), directory("rootfs/usr"), directory("rootfs/usr/local"),
             directory("rootfs/usr/local/a"), file("rootfs/usr/local/a/old1", "1"), file("rootfs/usr/local/a/old2", "2"),
             directory("rootfs/usr/local/a/sub"), file("rootfs/usr/local/a/sub/deep", "3"),
             file("rootfs/usr/local/gone", "x"), directory("rootfs/usr/local/gonedir"), file("rootfs/usr/local/gonedir/f", "y"),
             file("rootfs/usr/local/kept", "k")]  # fmt: skip
    upper = [directory("rootfs/usr/local/a"), file("rootfs/usr/local/a/.wh..wh..opq"), file("rootfs/usr/local/a/new", "n"),
             file("rootfs/usr/local/.wh.gone"), file("rootfs/usr/local/.wh.gonedir")]  # fmt: skip
    apply_layers(layers_of(tmp_path, lower, upper), root)
    local = root / "rootfs/usr/local"
    assert sorted(os.listdir(local)) == ["a", "kept"]
    assert sorted(os.listdir(local / "a")) == ["new"]  # opaque: every lower child hidden
    assert (local / "kept").read_text() == "k"
    assert not any(n.startswith(".wh.") for _, d, f in os.walk(root) for n in d + f)  # never materialised


def test_opaque_keeps_what_its_own_layer_wrote_before_it(tmp_path, box):
    root, _ = box
    lower = [directory("d"), file("d/lower", "l"), directory("d/sub"), file("d/sub/lowerdeep", "x")]
    upper = [directory("d"), file("d/mine", "m"), file("d/sub/mine2", "m2"), file("d/.wh..wh..opq")]
    apply_layers(layers_of(tmp_path, lower, upper), root)
    assert sorted(os.listdir(root / "d")) == ["mine", "sub"]
    assert sorted(os.listdir(root / "d/sub")) == ["mine2"]  # the lower child of a merged dir is hidden too


def test_replacing_kinds_and_owners(tmp_path, box):
    root, _ = box
    lower = [directory("x"), file("x/f", "1"), file("y", "file"), symlink("z", "/etc")]
    upper = [file("x", "now a file"), directory("y"), file("y/in", "i"), directory("z"), file("z/in", "safe")]
    apply_layers(layers_of(tmp_path, lower, upper), root)
    assert (root / "x").read_text() == "now a file"
    assert (root / "y/in").read_text() == "i"
    assert (root / "z").is_dir() and not (root / "z").is_symlink() and (root / "z/in").read_text() == "safe"
    if os.geteuid() == 0:  # tar says uid 1000: files end up root's, as on a node
        assert {os.lstat(p).st_uid for p in root.rglob("*")} == {0}


def test_modes_kept_and_read_only_dir_filled(tmp_path, box):
    root, _ = box
    entries = [directory("ro", 0o555), file("ro/x", "x", 0o4755), directory("ro/sub", 0o700), file("ro/sub/y", "y")]
    apply_layers(layers_of(tmp_path, entries), root, allow_setuid=True)
    assert (root / "ro").stat().st_mode & 0o7777 == 0o555
    assert (root / "ro/x").stat().st_mode & 0o7777 == 0o4755
    assert (root / "ro/sub/y").read_text() == "y"


def test_group_and_other_write_removed(tmp_path, box):
    root, _ = box
    entries = [directory("d", 0o777), file("d/w", "w", 0o777), file("d/g", "g", 0o664), directory("d/sticky", 0o1777),
               directory("d/sgid", 0o2775)]  # fmt: skip
    report = apply_layers(layers_of(tmp_path, entries), root)
    modes = {n: os.lstat(root / "d" / n).st_mode & 0o7777 for n in ("w", "g", "sticky", "sgid")}
    assert modes == {"w": 0o755, "g": 0o644, "sticky": 0o1755, "sgid": 0o755}
    assert os.lstat(root / "d").st_mode & 0o7777 == 0o755
    assert sorted(report.writable) == [("d", True, 0o777), ("d/sticky", True, 0o1777), ("d/w", False, 0o777)]


@pytest.mark.parametrize("mode,bits", [(0o4755, "setuid"), (0o2711, "setgid"), (0o6755, "setuid and setgid")],
                         ids=["setuid", "setgid", "both"])
def test_setuid_and_setgid_files_refused_unless_allowed(tmp_path, box, mode, bits):
    root, _ = box
    lists = [directory("rootfs"), file("rootfs/su", "x", mode)]
    with pytest.raises(UnpackError) as err:
        apply_layers(layers_of(tmp_path, lists), root)
    assert str(err.value) == (f"layer 1: entry 'rootfs/su': {bits} file (mode {mode:04o}): "
                              "not installed unless the operator allows it (--allow-setuid)")  # fmt: skip
    assert err.value.entry == "rootfs/su" and not (root / "rootfs/su").exists()
    other = tmp_path / "allowed"
    other.mkdir()
    apply_layers(layers_of(tmp_path, lists), other, allow_setuid=True)
    assert os.lstat(other / "rootfs/su").st_mode & 0o7777 == mode


def test_hard_link_inside_is_made_with_a_warning(tmp_path, box):
    root, _ = box
    report = apply_layers(layers_of(tmp_path, [file("a", "data"), hardlink("b", "a")]), root)
    assert os.stat(root / "a").st_ino == os.stat(root / "b").st_ino
    assert any("empty files" in w and "'b'" in w for w in report.warnings)


MALICIOUS = {
    "absolute name": ([[file("/etc/evil", "x")]], "'/etc/evil': absolute name"),
    "dot-dot name": ([[file("rootfs/../../outside/evil", "x")]], "name contains '..'"),
    "write through a symlinked dir, same layer": ([[symlink("rootfs", "../outside"), file("rootfs/evil", "x")]],
                                                  "\"rootfs\" is a symlink: nothing may be written through it"),
    "write through a symlinked dir, lower layer": ([[directory("r"), symlink("r/up", "/tmp")], [file("r/up/evil", "x")]],
                                                   "\"r/up\" is a symlink"),
    "dir entry through a symlink": ([[symlink("d", "../outside")], [directory("d/sub")]], "\"d\" is a symlink"),
    "whiteout through a symlink": ([[symlink("d", "../outside")], [file("d/.wh.keep")]], "\"d\" is a symlink"),
    "opaque through a symlink": ([[symlink("d", "../outside")], [file("d/.wh..wh..opq")]], "\"d\" is a symlink"),
    "hard link to an absolute path": ([[hardlink("evil", "/etc/passwd")]], "hard link to '/etc/passwd': absolute name"),
    "hard link with dot-dot": ([[hardlink("evil", "../outside/keep")]], "hard link to '../outside/keep': name contains '..'"),
    "hard link through a symlink": ([[symlink("s", "../outside"), hardlink("evil", "s/keep")]], "\"s\" is a symlink"),
    "hard link to nothing": ([[hardlink("evil", "nothere")]], "does not exist"),
    "character device": ([[Entry("rootfs/dev/null", type=tarfile.CHRTYPE)]], "special files are not allowed (a device)"),
    "block device": ([[Entry("sda", type=tarfile.BLKTYPE)]], "special files are not allowed (a device)"),
    "fifo": ([[Entry("rootfs/usr/local/fifo", type=tarfile.FIFOTYPE)]], "special files are not allowed (a FIFO)"),
    "whiteout of dot-dot": ([[directory("d")], [file("d/.wh...")]], "whiteout of an invalid name"),
    "unknown aufs whiteout": ([[directory("d")], [file("d/.wh..wh.plnk")]], "unsupported whiteout"),
    "newline in a name": ([[file("rootfs/usr/local/a\n/usr/local/bin/forged", "x")]], "name contains a control character"),
    "escape in a name": ([[file("rootfs/usr/local/\x1b]0;owned\x07", "x")]], "name contains a control character"),
    "C1 control in a name": ([[directory("rootfs\x9b2J")]], "name contains a control character"),
    "hard link to a name with a newline": ([[file("a", "x"), hardlink("b", "a\nb")]], "name contains a control character"),
    "file over a file parent": ([[file("f", "x")], [file("f/child", "y")]], "\"f\" is not a directory"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_entries_refused_and_nothing_outside(tmp_path, box, case):
    root, outside = box
    before = snapshot(outside)
    lists, expected = MALICIOUS[case]
    with pytest.raises(UnpackError) as err:
        apply_layers(layers_of(tmp_path, *lists), root)
    assert expected in str(err.value)
    assert "layer " in str(err.value) and "entry " in str(err.value)  # names the layer and the entry
    assert snapshot(outside) == before
    assert not (tmp_path / "box" / "evil").exists() and not Path("/etc/evil").exists()


def test_corrupted_blob_refused_before_reading(tmp_path, box):
    root, _ = box
    [layer] = layers_of(tmp_path, [file("a", "x" * 100)])
    data = bytearray(layer.path.read_bytes())
    data[-10] ^= 0xFF
    layer.path.write_bytes(bytes(data))
    with pytest.raises(UnpackError, match=r"layer 1: blob sha256:[0-9a-f]{64} is corrupted: its content has digest sha256:"):
        apply_layers([layer], root)
    assert os.listdir(root) == []


def test_blob_size_and_missing(tmp_path):
    [layer] = layers_of(tmp_path, [file("a", "x")])
    with pytest.raises(UnpackError, match="the manifest says 3"):
        verify_blob(layer.path, layer.digest, 3, "layer 1")
    with pytest.raises(UnpackError, match="is missing"):
        verify_blob(tmp_path / "nope", layer.digest, -1, "layer 1")


def test_garbage_layer_is_a_clear_error(tmp_path, box):
    root, _ = box
    path = tmp_path / "junk"
    path.write_bytes(gz(b"this is not a tar archive at all" * 40))
    with pytest.raises(UnpackError, match="not a valid tar stream"):
        apply_layers([Layer(path, sha(path.read_bytes()), label="layer 1")], root)


def test_zstd_and_plain_tar_layers(tmp_path, box):
    try:
        import zstandard
    except ImportError:
        message = "zstandard missing: pip install 'extvisor[extensions]' (scripts/setup.sh does)"
        if os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
            pytest.skip(message)
        pytest.fail(message + " (or set EXTVISOR_ALLOW_SKIP=1 to skip)")
    root, _ = box
    zst = zstandard.ZstdCompressor().compress(tar_bytes([directory("z"), file("z/a", "zstd")]))
    plain = tar_bytes([file("z/b", "plain")])
    layers = []
    for name, blob, mtype in (("l1", zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
                              ("l2", plain, "application/vnd.docker.image.rootfs.diff.tar.gzip")):  # fmt: skip
        (tmp_path / name).write_bytes(blob)
        layers.append(Layer(tmp_path / name, sha(blob), len(blob), mtype, name))
    apply_layers(layers, root)
    assert (root / "z/a").read_text() == "zstd" and (root / "z/b").read_text() == "plain"


def special_header(kind: bytes, size: int, name: str = "././@PaxHeader") -> bytes:
    """One raw special header block claiming *size* bytes of data (the data is not included)."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(tarfile.USTAR_FORMAT)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


BOMBS = {
    # the header claims 400 MB; only a little follows: refused before tarfile tries to read it
    "PAX header over 1 MiB": (special_header(tarfile.XHDTYPE, 400 << 20) + b"1" * 4096,
                              "a PAX header of 419430400 bytes at offset 0: special headers over 1048576 bytes are refused"),
    "PAX global header over 1 MiB": (special_header(tarfile.XGLTYPE, 2 << 20) + b"1" * 4096, "a PAX global header of 2097152 bytes"),
    "GNU long name over 1 MiB": (special_header(tarfile.GNUTYPE_LONGNAME, 300 << 20, "././@LongLink") + b"a" * 4096,
                                 "a GNU long name of 314572800 bytes"),
    "GNU long link over 1 MiB": (special_header(tarfile.GNUTYPE_LONGLINK, 5 << 20, "././@LongLink") + b"a" * 4096,
                                 "a GNU long link name of 5242880 bytes"),
    "old GNU sparse": (special_header(tarfile.GNUTYPE_SPARSE, 10, "sparse") + b"\0" * 1024, "old GNU sparse entry"),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_special_headers_over_a_mebibyte_refused_before_reading(tmp_path, box, case):
    root, _ = box
    data, expected = BOMBS[case]
    path = tmp_path / "bomb.tar"
    path.write_bytes(gz(data + b"\0" * 1024))
    with pytest.raises(UnpackError) as err:
        apply_layers([Layer(path, sha(path.read_bytes()), label="layer 1")], root)
    assert str(err.value).startswith("layer 1: ") and expected in str(err.value)
    assert os.listdir(root) == []


def test_special_headers_in_a_row_count_together(tmp_path, box):
    root, _ = box
    record = pax_record("comment", "x" * (700 << 10))  # each under 1 MiB, two of them over
    chained = b"".join(special_header(tarfile.XHDTYPE, len(record)) + padded(record) for _ in range(2))
    path = tmp_path / "chain.tar"
    path.write_bytes(gz(chained + tar_bytes([file("after", "x")])))
    with pytest.raises(UnpackError, match=r"layer 1: special headers of \d+ bytes in a row before one entry"):
        apply_layers([Layer(path, sha(path.read_bytes()), label="layer 1")], root)
    # global headers stay for the whole stream: many small ones count together too
    record = pax_record("comment", "g" * (300 << 10))
    parts = [special_header(tarfile.XGLTYPE, len(record)) + padded(record) + tar_bytes([file(f"f{i}", "x")])[:1024]
             for i in range(4)]  # fmt: skip
    path.write_bytes(gz(b"".join(parts) + b"\0" * 1024))
    with pytest.raises(UnpackError, match=r"PAX global headers of \d+ bytes in all"):
        apply_layers([Layer(path, sha(path.read_bytes()), label="layer 1")], root)


def test_a_large_but_allowed_pax_header_still_applies(tmp_path, box):
    root, _ = box
    name = "rootfs/usr/local/" + "d" * 200 + "/long-name"  # PAX path record
    report = apply_layers(layers_of(tmp_path, [file(name, "ok")]), root)
    assert (root / name).read_text() == "ok" and report.entries == 1

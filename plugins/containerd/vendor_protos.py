"""Copy the containerd .proto files extvisor needs into plugins/containerd/proto/.

Run by hand when moving to another containerd API version; the result is committed.
The protos come from Debian's golang-github-containerd-containerd-dev (Apache-2.0) and
golang-github-gogo-protobuf-dev (BSD-3-Clause), fetched with ``apt-get download``:

    python plugins/containerd/vendor_protos.py            # downloads the two .debs
    python plugins/containerd/vendor_protos.py --src DIR  # DIR = an extracted tree

Import paths ``github.com/containerd/containerd/...`` cannot become Python modules, so
each file moves under ``extvisor_containerd/api/`` and its imports are rewritten to
match; ``import weak`` becomes a plain import (Python has no weak imports). Protobuf
package names are left alone, so gRPC method paths and type URLs stay containerd's.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "proto"
PREFIX = "extvisor_containerd/api"
DEBS = ("golang-github-containerd-containerd-dev", "golang-github-gogo-protobuf-dev")
CTRD = "github.com/containerd/containerd"

# upstream path (under gocode/src) -> path under proto/
FILES = {
    f"{CTRD}/api/services/containers/v1/containers.proto": f"{PREFIX}/services/containers/v1/containers.proto",
    f"{CTRD}/api/services/tasks/v1/tasks.proto": f"{PREFIX}/services/tasks/v1/tasks.proto",
    f"{CTRD}/api/services/version/v1/version.proto": f"{PREFIX}/services/version/v1/version.proto",
    f"{CTRD}/api/types/descriptor.proto": f"{PREFIX}/types/descriptor.proto",
    f"{CTRD}/api/types/metrics.proto": f"{PREFIX}/types/metrics.proto",
    f"{CTRD}/api/types/mount.proto": f"{PREFIX}/types/mount.proto",
    f"{CTRD}/api/types/task/task.proto": f"{PREFIX}/types/task/task.proto",
    f"{CTRD}/runtime/v2/runc/options/oci.proto": f"{PREFIX}/runc/options/oci.proto",
    "github.com/gogo/protobuf/gogoproto/gogo.proto": f"{PREFIX}/gogoproto/gogo.proto",
}
# how other files import them
IMPORTS = {k.removeprefix("github.com/gogo/protobuf/"): v for k, v in FILES.items()} | FILES
LICENSES = {
    "golang-github-containerd-containerd-dev": "COPYRIGHT.containerd",
    "golang-github-gogo-protobuf-dev": "COPYRIGHT.gogo-protobuf",
}


def rewrite(text: str, source: str, version: str) -> str:
    def repl(m: re.Match[str]) -> str:
        target = IMPORTS.get(m.group(2))
        if target is None:  # google/protobuf/*.proto: bundled with grpcio-tools
            return f'import "{m.group(2)}";'
        return f'import "{target}";'

    text = re.sub(r'import\s+(weak\s+|public\s+)?"([^"]+)";', repl, text)
    header = f"// Vendored from {source} ({version}) by plugins/containerd/vendor_protos.py;\n"
    header += "// import paths rewritten for Python. Do not edit: re-run the script.\n"
    return header + text


def vendor(src: Path, version: str) -> None:
    gocode = src / "usr/share/gocode/src"
    if OUT.exists():
        shutil.rmtree(OUT / PREFIX.split("/")[0], ignore_errors=True)
    for upstream, local in FILES.items():
        text = (gocode / upstream).read_text()
        dest = OUT / local
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(rewrite(text, upstream, version))
    for pkg, name in LICENSES.items():
        shutil.copyfile(src / "usr/share/doc" / pkg / "copyright", OUT / name)
    (OUT / "VERSION").write_text(version + "\n")


def download(tmp: Path) -> tuple[Path, str]:
    tmp.chmod(0o755)  # apt's _apt user downloads into it
    subprocess.run(["apt-get", "download", *DEBS], cwd=tmp, check=True)
    version = ""
    for deb in sorted(tmp.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], check=True)
        if deb.name.startswith(DEBS[0]):
            version = "containerd " + deb.name.split("_")[1].replace("%7e", "~")
    return tmp / "x", version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="an extracted tree holding usr/share/gocode/src")
    parser.add_argument("--version", default="", help="recorded in proto/VERSION")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, version = (args.src, args.version) if args.src else download(Path(tmp))
        vendor(src, args.version or version or "unknown version")
    print(f"vendored {len(FILES)} files into {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

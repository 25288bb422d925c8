"""Generate extvisor_containerd/api/ (the gRPC stubs) from the vendored protos in proto/.

Run at build time by the repository's hatch_build.py (wheel and editable installs), or
by hand: ``python plugins/containerd/gen_stubs.py``. Needs grpcio-tools; the generated
code then requires a protobuf runtime at least as new as the protobuf that grpcio-tools
bundles, and grpcio at least as new as grpcio-tools (see plugins/containerd/README.md).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "proto"
API = HERE / "extvisor_containerd" / "api"
INIT = '"""gRPC stubs generated from containerd {version} protos by gen_stubs.py. Do not edit."""\n'


def generate(proto: Path = PROTO, out: Path = HERE) -> list[Path]:
    """Run protoc on every .proto under *proto*; return the modules written under *out*."""
    import grpc_tools
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(proto)) for p in proto.rglob("*.proto"))
    api = out / "extvisor_containerd" / "api"
    shutil.rmtree(api, ignore_errors=True)
    api.mkdir(parents=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    version = (proto / "VERSION").read_text().strip() if (proto / "VERSION").exists() else "unknown"
    for d in [api, *(p for p in api.rglob("*") if p.is_dir())]:
        (d / "__init__.py").write_text(INIT.format(version=version))
    (api / "VERSION").write_text(version + "\n")
    return sorted(api.rglob("*.py"))


if __name__ == "__main__":
    written = generate()
    print(f"generated {len(written)} modules in {API}")
    sys.exit(0)

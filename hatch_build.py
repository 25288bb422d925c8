"""Build hook: generate the containerd gRPC stubs when a wheel (or an editable install) is built.

The stubs are generated, never committed: plugins/containerd/gen_stubs.py runs protoc
(grpcio-tools, a build requirement pinned in pyproject.toml) on the vendored protos in
plugins/containerd/proto/. Generated files are git-ignored, so they are added to the
wheel as artifacts. See plugins/containerd/README.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

GEN = Path("plugins/containerd/gen_stubs.py")


class ContainerdStubsHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        path = Path(self.root) / GEN
        spec = importlib.util.spec_from_file_location("extvisor_containerd_gen_stubs", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            written = module.generate()
        except ImportError as exc:
            raise RuntimeError(
                f"building extvisor needs grpcio-tools to generate the containerd stubs ({exc}); pip "
                "installs it by itself, but with --no-build-isolation install grpcio-tools==1.85.1 first"
            ) from exc
        self.app.display_info(f"containerd stubs: {len(written)} modules generated")
        build_data["artifacts"].append("plugins/containerd/extvisor_containerd/api/")

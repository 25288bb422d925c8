"""containerd's default seccomp profile: the generated data and its assembly per capability set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from extvisor.oci import build_oci_spec, grantable_capabilities
from extvisor.oci.seccomp import allowed, default_profile, rules
from extvisor.testing import make_service

ROOT = Path(__file__).resolve().parents[2]


def _rules_for(profile: dict, name: str) -> list[dict]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_data_is_generated_from_containerd() -> None:
    data = rules()
    assert "contrib/seccomp/seccomp_default.go" in data["source"]
    assert data["defaultAction"] == "SCMP_ACT_ERRNO"
    assert data["adminCapability"] == "CAP_SYS_ADMIN"
    assert "read" in data["syscalls"][0]["names"] and len(data["syscalls"][0]["names"]) > 300


def test_profile_follows_capabilities() -> None:
    full = default_profile(["CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_MODULE"], machine="x86_64", kernel=(6, 1))
    assert full["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert all(allowed(full, n) for n in ("mount", "unshare", "setns", "reboot", "init_module", "arch_prctl", "ptrace"))
    assert not _rules_for(full, "clone3")[0].get("errnoRet")  # allowed with CAP_SYS_ADMIN

    none = default_profile([], machine="x86_64", kernel=(6, 1))
    assert not any(allowed(none, n) for n in ("mount", "reboot", "init_module", "swapoff", "keyctl"))
    [clone] = _rules_for(none, "clone")
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" and clone["args"][0]["value"] == 0x7E020000
    [clone3] = _rules_for(none, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}  # ENOSYS
    assert not allowed(default_profile([], machine="x86_64", kernel=(4, 4)), "ptrace")  # by kernel version
    assert not allowed(default_profile([], machine="aarch64", kernel=(6, 1)), "arch_prctl")


def test_spec_carries_the_profile_for_its_capabilities(tmp_path: Path) -> None:
    spec = build_oci_spec(make_service("s", "true"), tmp_path)
    caps = spec["process"]["capabilities"]["bounding"]
    assert spec["linux"]["seccomp"] == default_profile(caps)
    assert not allowed(spec["linux"]["seccomp"], "reboot")  # CAP_SYS_BOOT is dropped, as Talos does
    assert not allowed(spec["linux"]["seccomp"], "swapoff")  # never allowed
    assert allowed(spec["linux"]["seccomp"], "mount") == ("CAP_SYS_ADMIN" in grantable_capabilities())


GO = '''
package seccomp
func arches() []specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86}
	default:
		return []specs.Arch{}
	}
}
func DefaultProfile(sp *specs.Spec) *specs.LinuxSeccomp {
	nosys := uint(unix.ENOSYS)
	syscalls := []specs.LinuxSyscall{
		{
			Names: []string{"read", "write"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{},
		},
	}
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: arches(),
		Syscalls:      syscalls,
	}
	switch runtime.GOARCH {
	case "amd64", "386":
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"modify_ldt"}, Action: specs.ActAllow})
	}
	admin := false
	for _, c := range sp.Process.Capabilities.Bounding {
		switch c {
		case "CAP_SYS_ADMIN":
			admin = true
			s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"mount"}, Action: specs.ActAllow})
		}
	}
	if !admin {
		switch runtime.GOARCH {
		default:
			s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
				Names: []string{"clone"},
				Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{
					{Index: 0, Value: unix.CLONE_NEWNS | unix.CLONE_NEWUTS, ValueTwo: 0, Op: specs.OpMaskedEqual},
				},
			})
		}
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &nosys})
	}
	return s
}
'''


def _generator():
    spec = importlib.util.spec_from_file_location("gen_seccomp", ROOT / "scripts" / "gen_seccomp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_reads_the_go_function() -> None:
    data = _generator().generate(GO, "test")
    assert data["architectures"] == {"amd64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "default": []}
    assert data["syscalls"] == [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
    assert data["byArch"]["386"] == data["byArch"]["amd64"] == [{"names": ["modify_ldt"], "action": "SCMP_ACT_ALLOW"}]
    assert data["byCapability"] == {"CAP_SYS_ADMIN": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW"}]}
    assert data["adminCapability"] == "CAP_SYS_ADMIN"
    clone = data["withoutAdmin"]["byArch"]["default"][0]["args"][0]
    assert clone == {"index": 0, "value": 0x04020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    assert data["withoutAdmin"]["always"] == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_generator_refuses_what_it_does_not_know() -> None:
    gen = _generator()
    try:
        gen.generate(GO.replace("admin := false", "admin := false\n\tgoto done"), "test")
    except gen.GoError as exc:
        assert "seccomp_default.go" in str(exc) or "statement" in str(exc)
    else:
        raise AssertionError("an unknown statement was accepted")


def test_committed_data_is_what_the_generator_wrote() -> None:
    # The JSON is the generator's output format (indent 1, trailing newline): not edited by hand.
    text = (ROOT / "core/extvisor/oci/seccomp_default.json").read_text()
    assert text == json.dumps(json.loads(text), indent=1) + "\n"

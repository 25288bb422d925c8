"""Which ImageVerificationConfig the images of a declared state are verified under.

The state's own document when its config text holds one (the file declares the node's trust
too), else the one another file of the service-config directory holds, never the one of the
engine's own file that this state drops. Read straight from the files, without the daemon's
ConfigStore: reading through it here would report its documents as changed to its watcher.
"""

from __future__ import annotations

from pathlib import Path

from extvisor.documents.imageverify import MachineConfig, load_machine_config, read_machine_config
from extvisor.extensions import FetchOptions, Ref
from extvisor.extensions.verify import Policy


def _errors(read: MachineConfig) -> list:  # type: ignore[type-arg]
    return [f for f in read.findings if f.severity == "error"]


def other_verification(config_dir: Path | None, own: str) -> str | None:
    """A file of *config_dir*, not the engine's own, that holds an ImageVerificationConfig."""
    if config_dir is None or not config_dir.is_dir():
        return None
    for path in sorted(config_dir.glob("*.yaml")):
        if path.name != own and load_machine_config(path).holds_verification:
            return str(path)
    return None


def policy_for(config_dir: Path | None, own: str, configs_text: str, require: bool) -> Policy:
    if configs_text:
        ours = read_machine_config(configs_text, str((config_dir or Path(".")) / own))
        if ours.holds_verification:
            return Policy(ours.verifications[0] if ours.verifications else None, require, _errors(ours))
    other = other_verification(config_dir, own)
    if other is None:
        return Policy(None, require)
    read = load_machine_config(other)
    return Policy(read.verifications[0] if read.verifications else None, require, _errors(read))


def recheck(policy: Policy, ref: Ref, verified: str, options: FetchOptions) -> None:
    """An image already in the store (installed, or kept for a rollback), under *policy* now.

    A ``deny`` rule, or no rule with ``--require-signatures``, refuses it (VerifyError); a
    ``publicKey`` rule takes it when its tree was verified with that very key (same digest),
    else its signature is checked at the registry again.
    """
    import tempfile

    rule = policy.decide(ref)
    if rule is not None and rule.action == "publicKey" and verified == f"key {rule.fingerprint}":
        return
    with tempfile.TemporaryDirectory(prefix="extvisor-recheck-") as work:
        policy.check(ref, options, Path(work))

"""A node that follows a declared state published in a registry (``extvisor daemon --follow REF``).

Every interval (±20 % jitter, so a fleet's checks spread out) the node resolves the tag to a
digest with one ``skopeo inspect --raw``. An unchanged digest ends the check. A new one is
verified under the node's ImageVerificationConfig first — a followed document must match a
``publicKey`` rule, never "no rule matched" or ``skip`` — then pulled by that digest and handed
to the same engine as ``extvisor apply`` (health gate and automatic rollback included).

What is recorded, in ``<state-dir>/follow.json`` (so a restarted daemon neither retries a
refused digest nor forgets what it runs): the source, the digest running, the last check and
the last error, and each refused digest with its reason. A digest refused for its signature,
its document or its health is not tried again until the tag moves. A registry that cannot be
reached changes nothing on the node and is asked again with backoff (doubling from
``BACKOFF`` seconds up to the interval). An apply that fails before changing anything (an
image that cannot be pulled) is tried again with that backoff, ``TRIES`` times, then refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("extvisor.follow")
JITTER = 0.2  #: each wait is the interval times a factor in [1 - JITTER, 1 + JITTER]
BACKOFF = 1.0  #: the first retry after a registry error, seconds; doubles up to the interval
TRIES = 3  #: applies that failed before changing anything, per digest, before it is refused
KEEP_REFUSED = 20  #: refused digests remembered
RETRY = ("outage", "busy", "failed", "error")  #: outcomes checked again after backoff, not the interval
RESULTS = ("applied", "unchanged", "rolled_back", "failed", "refused")  #: extvisor_config_apply_total{result}


class Transient(Exception):
    """The registry could not be reached or read: try again later, change nothing."""


class Refusal(Exception):
    """This digest is not to be run (signature, document); the message says why."""


@dataclass(frozen=True)
class Fetched:
    digest: str
    text: str
    title: str
    generation: int | None
    verified: str  #: ``key <fingerprint>`` and the rule


class Source(Protocol):
    """Where the document comes from (a registry, through skopeo; a double in unit tests)."""

    def resolve(self) -> str:
        """The digest the followed reference names now; Transient when the registry cannot say."""

    def fetch(self, digest: str) -> Fetched:
        """Verify and pull *digest*: Refusal when it is not to be run, Transient on an outage."""


class Engine(Protocol):
    """``server/declared``'s engine (issue 28), as far as following needs it."""

    async def apply(self, text: str, filename: str, timeout: float, by: str, progress: Any = ...) -> dict[str, Any]: ...


def engine_errors() -> tuple[type[Exception], type[Exception]]:
    """The engine's ``Busy`` and ``DocumentError``."""
    from extvisor.server.declared.engine import Busy, DocumentError

    return Busy, DocumentError


def parse_interval(text: str | float) -> float:
    """``60``, ``60s``, ``5m``, ``1m30s``, ``1h`` -> seconds; ValueError otherwise (at least 1 s)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        import re

        raw = text.strip()
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            seconds = float(raw)
        else:
            parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", raw)
            if not raw or parts is None:
                raise ValueError(f"{text!r} is not a duration: use e.g. 60s, 5m, 1m30s or 1h")
            h, m, s = parts.groups()
            seconds = int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)
    if seconds < 1:
        raise ValueError(f"{text!r}: the follow interval is at least 1s")
    return seconds


def jittered(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - JITTER, 1 + JITTER)


class Follower:
    def __init__(self, ref: str, interval: float, source: Source, engine: Engine, state_dir: Path,
                 timeout: float = 120.0, event: Callable[[str, str], None] | None = None,
                 rng: random.Random | None = None):  # fmt: skip
        self.ref = ref
        self.interval = interval
        self.source = source
        self.engine = engine
        self.timeout = timeout  #: for the changed services to come up (the engine's health gate)
        self.path = state_dir / "follow.json"
        self.event = event or (lambda state, msg: None)
        self.rng = rng or random.Random()
        self.counts = dict.fromkeys(RESULTS, 0)
        self.failures = 0  #: checks in a row that ended in an error (the backoff's exponent)
        self.down = False  #: the registry could not be reached at the last check
        self.tries: dict[str, int] = {}  #: failed applies per digest
        self.wake = asyncio.Event()
        self.record = self._load()
        if self.record.get("source") != ref:  # followed something else before: keep what runs, say what is followed
            self.record["previous_source"] = self.record.get("source")
            self.record["source"] = ref
        self.checking = False

    # -- the record ---------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = None
        base = {"source": None, "digest": None, "generation": None, "applied_at": None, "checked_at": None,
                "checked_digest": None, "last_error": None, "last_error_at": None, "refused": {}}  # fmt: skip
        return {**base, **data} if isinstance(data, dict) else base

    def _save(self) -> None:
        """Written to a temporary file, fsynced and renamed: a crash leaves the old record or the new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(self.record, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def status(self) -> dict[str, Any]:
        """What ``extvisor applied`` shows: source, the digest running, last check, last error."""
        r = self.record
        return {"source": self.ref, "interval": self.interval, "digest": r["digest"], "generation": r["generation"],
                "applied_at": r["applied_at"], "checked_at": r["checked_at"], "checked_digest": r["checked_digest"],
                "last_error": r["last_error"], "last_error_at": r["last_error_at"],
                "refused": [{"digest": d, **v} for d, v in r["refused"].items()]}  # fmt: skip

    def _error(self, message: str) -> None:
        self.record["last_error"], self.record["last_error_at"] = message, time.time()

    def _refuse(self, digest: str, reason: str, result: str = "refused") -> None:
        refused = self.record["refused"]
        refused[digest] = {"reason": reason, "at": time.time()}
        for old in list(refused)[:-KEEP_REFUSED]:
            del refused[old]
        self._error(f"{digest}: {reason}")
        self.counts[result] += 1
        log.warning("follow %s: %s not taken (%s): %s", self.ref, digest, result.replace("_", " "), reason)
        self.event("Failed", f"declared state {digest} from {self.ref} not taken: {reason}")

    # -- one check ------------------------------------------------------------------------------

    async def check(self) -> str:
        """One look at the tag, and whatever follows; what happened, in a word."""
        self.checking = True
        outcome = "error"
        try:
            outcome = await self._check()
            return outcome
        finally:
            self.failures = self.failures + 1 if outcome in RETRY else 0
            self.checking = False
            self._save()

    async def _check(self) -> str:
        try:
            digest = await asyncio.to_thread(self.source.resolve)
        except Transient as exc:
            return self._outage(str(exc))
        if self.down:
            log.info("follow %s: the registry answers again", self.ref)
            self.event("Running", f"the registry answers again for {self.ref}")
        self.down = False
        r = self.record
        r["checked_at"], r["checked_digest"] = time.time(), digest
        if digest == r["digest"]:
            return "unchanged"
        if digest in r["refused"]:
            return "refused before"
        try:
            fetched = await asyncio.to_thread(self.source.fetch, digest)
        except Transient as exc:
            return self._outage(str(exc))
        except Refusal as exc:
            self._refuse(digest, str(exc))
            return "refused"
        return await self._apply(fetched)

    def _outage(self, message: str) -> str:
        if not self.down:
            self.event("Waiting", f"cannot check {self.ref}: {message}; the node stays as it is")
        self.down = True
        log.warning("follow %s: %s (error %d in a row)", self.ref, message, self.failures + 1)
        self._error(message)
        return "outage"

    async def _apply(self, fetched: Fetched) -> str:
        Busy, DocumentError = engine_errors()
        digest = fetched.digest
        by = f"follow {self.ref}@{digest}"
        filename = f"{self.ref}@{digest}" + (f" ({fetched.title})" if fetched.title else "")
        log.info("follow %s: new digest %s (generation %s, %s): applying", self.ref, digest, fetched.generation, fetched.verified)
        try:
            result = await self.engine.apply(fetched.text, filename, self.timeout, by)
        except DocumentError as exc:
            self._refuse(digest, f"the document does not validate: {exc}")
            return "refused"
        except Busy as exc:
            self._error(str(exc))
            return "busy"
        word = str(result.get("result", "failed"))
        reason = str(result.get("reason") or "")
        if word in ("applied", "unchanged"):
            r = self.record
            r.update(digest=digest, generation=fetched.generation, applied_at=time.time(), last_error=None, last_error_at=None)
            self.tries.pop(digest, None)
            self.counts[word] += 1
            gen = result.get("generation")
            log.info("follow %s: %s %s: node generation %s", self.ref, digest, word, gen)
            self.event("Running", f"declared state {digest} (published generation {fetched.generation}) from {self.ref} "
                                  f"{word}: node generation {gen}")  # fmt: skip
            return word
        if word == "rolled back":
            self._refuse(digest, f"rolled back: {reason}", "rolled_back")
            return "rolled_back"
        tries = self.tries[digest] = self.tries.get(digest, 0) + 1
        if tries >= TRIES:
            self.tries.pop(digest, None)
            self._refuse(digest, f"failed {tries} times: {reason}", "failed")
            return "failed"
        self.counts["failed"] += 1
        self._error(f"{digest}: {reason} (try {tries} of {TRIES})")
        return "failed"  # tried again with backoff, the node unchanged

    # -- the loop -----------------------------------------------------------------------------

    def delay(self, outcome: str) -> float:
        """Seconds until the next check: the interval, or backoff after an error; jittered."""
        if outcome in RETRY and self.failures:
            return jittered(min(self.interval, BACKOFF * 2 ** (self.failures - 1)), self.rng)
        return jittered(self.interval, self.rng)

    async def run(self) -> None:
        """Check now (after a jittered moment), then at each interval, until cancelled."""
        log.info("following %s every %gs (±%d%%)", self.ref, self.interval, JITTER * 100)
        await self._sleep(self.rng.uniform(0, JITTER * self.interval))
        while True:
            try:
                outcome = await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything: the next check may do better
                log.exception("follow %s: the check failed", self.ref)
                self._error(f"the check failed: {exc!r}")
                outcome = "error"  # check() counted it
            await self._sleep(self.delay(outcome))

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.wake.wait(), seconds)
        except TimeoutError:
            pass
        self.wake.clear()


class RegistrySource:
    """The real source: skopeo for the registry, the trust issue's verifier for the signature."""

    def __init__(self, ref: str, options: Any, policy: Callable[[], Any], work: Path):
        from extvisor.extensions import artifact

        self.ref = artifact.docker_ref(ref)
        self.options = replace(options, timeout=options.timeout or 300)  # the verifier takes a number
        self.policy = policy  #: the node's verification policy now (Extensions.policy)
        self.work = work

    def resolve(self) -> str:
        from extvisor.extensions import artifact

        try:
            return artifact.resolve(self.ref, self.options, self._tmp(), timeout=60)[0]
        except artifact.RegistryError as exc:
            raise Transient(str(exc)) from None

    def _tmp(self) -> Path:
        from extvisor.shared.dirs import private_dir

        return private_dir(self.work, "fetching a followed document")

    def fetch(self, digest: str) -> Fetched:
        from extvisor.extensions import artifact

        pinned = artifact.by_digest(self.ref, digest)
        with tempfile.TemporaryDirectory(prefix="follow-", dir=self._tmp()) as tmp:
            verified = self._verify(pinned, Path(tmp))
            try:
                found = artifact.pull(self.ref, self.options, Path(tmp), digest)
            except artifact.RegistryError as exc:
                raise Transient(str(exc)) from None
            except artifact.ArtifactError as exc:
                raise Refusal(str(exc)) from None
        try:
            text = found.document.decode()
        except UnicodeDecodeError as exc:
            raise Refusal(f"the document is not UTF-8 text ({exc})") from None
        return Fetched(digest, text, found.title, found.generation, verified)

    def _verify(self, pinned: Any, work: Path) -> str:
        """The followed document must be signed with a key of a ``publicKey`` rule."""
        from extvisor.extensions.verify import VerifyError, verify_signature

        policy = self.policy()
        try:
            rule = policy.decide(pinned)
        except VerifyError as exc:
            raise Refusal(str(exc)) from None
        if rule is None:
            raise Refusal(f"no rule of the node's ImageVerificationConfig matches {pinned}: a followed document must "
                          "match a publicKey rule")  # fmt: skip
        if rule.action != "publicKey":
            raise Refusal(f"{rule} says {rule.action}: a followed document must match a publicKey rule")
        try:
            verdict = verify_signature(pinned, rule, self.options, work)
        except VerifyError as exc:
            text = str(exc)
            if any(s in text for s in ("cannot read its signatures", "cannot resolve", "did not answer", "not found: install")):
                raise Transient(text) from None
            raise Refusal(text) from None
        return f"{verdict.verified} ({verdict.rule})"

"""The models the online service serves, following the registry without a restart.

A poller thread reads each model's serving plan (`plan.current_plan`: registry aliases and the canary state
file) every `poll_seconds`. When the plan changes it loads the versions it does not hold yet, each through the
registry's `load_model`, which refuses a file whose sha256 does not match its record, and only then replaces
the model's `ServingModels` in one assignment. A micro-batch takes that reference once when it starts, so a
swap never fails or mixes a request: requests before it finish on the old models, later ones use the new.

- The previous champion stays loaded (and is loaded ahead of need), so a rollback is as quick as a promotion.
- A version that fails verification is not served: a new champion that fails keeps the last verified plan
  serving; a canary or shadow that fails is left out (the champion serves every row). Each is reported.
- When the registry cannot be read, the last verified models keep serving, and `status()` says since when
  and why (/readyz shows it).

Reading a DuckDB registry opens the database (~20-70 ms of a core, much of it holding the GIL the request path
needs), so a poll first compares the registry's change token (its files' stat) with the last read's and reads
only when it changed. Git's "racily clean" rule covers a write within the file clock's resolution of the stat:
a token whose newest change is less than RACY_SECONDS older than the moment it was taken is never trusted, and
every model is read in full at least every FULL_READ_SECONDS whatever the token says. The canary state file is
read every poll (one small file). A PostgreSQL registry has no token and is queried every poll.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from mlops_assets.core.serving.canary import CanaryStateFile
from mlops_assets.core.serving.plan import ServingModels, ServingPlan, current_plan, load_plan
from mlops_assets.core.training.trainer import prepare_for_scoring

RACY_SECONDS = 2.0  # a token this close to its file's last change may hide a second change in the same tick
FULL_READ_SECONDS = 30.0  # the registry is read at least this often, token or not


@dataclass
class ModelSlot:
    """One model's serving state; `serving` is replaced whole, never mutated."""

    name: str
    registry: object  # the model's scoped registry view
    canary_file: CanaryStateFile
    serving: ServingModels | None = None
    plan: ServingPlan | None = None  # the registry's plan at the last read (may differ from serving's)
    previous_champion: str | None = None
    loaded: dict[str, object] = field(default_factory=dict)  # version -> verified pipeline
    problems: dict[str, str] = field(default_factory=dict)  # version -> why it is not served
    swaps: int = 0
    aliases: dict | None = None  # the registry's serving aliases at the last read
    token: object = None  # the registry's change token taken just before that read (None: unknown)
    read_at: float = 0.0  # monotonic time of that read
    reads: int = 0  # registry reads (polls that found the token unchanged read nothing)


class LiveModels:
    def __init__(self, slots: list[ModelSlot], poll_seconds: float = 0.5,
                 on_swap: Callable[[str, ServingPlan], None] | None = None, clock: Callable[[], float] = time.time):
        self.slots = {slot.name: slot for slot in slots}
        self.poll_seconds = poll_seconds
        self._on_swap, self._clock = on_swap, clock
        self.registry_error: str | None = None
        self.registry_error_since: float | None = None
        self.last_read: float | None = None
        self.registry_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_portfolio(cls, portfolio, names: list[str], **kw) -> "LiveModels":
        slots = []
        for name in names:
            workspace = portfolio.model(name)
            slots.append(ModelSlot(name, workspace.registry,
                                   CanaryStateFile(workspace.paths.deployment_dir / "canary.json")))
        return cls(slots, **kw)

    def serving(self, name: str) -> ServingModels | None:
        return self.slots[name].serving

    # ------------------------------------------------------------------------------------------ following
    def refresh(self) -> None:
        """Read every model's plan once and swap in what changed. A registry error keeps what serves."""
        errors = []
        for slot in self.slots.values():
            try:
                aliases = self._aliases(slot)
                plan = current_plan(slot.registry, slot.canary_file, aliases)
                previous = aliases["previous_champion"]
            except Exception as exc:  # noqa: BLE001 - unreadable registry or canary file: keep serving
                errors.append(f"{slot.name}: {type(exc).__name__}: {exc}")
                continue
            if plan != slot.plan:
                self._apply(slot, plan, previous)
        now = self._clock()
        if errors:
            self.registry_errors += 1
            if self.registry_error is None:
                self.registry_error_since = now
            self.registry_error = "; ".join(errors)
        else:
            self.registry_error = self.registry_error_since = None
            self.last_read = now

    def _aliases(self, slot: ModelSlot) -> dict:
        """The slot's registry aliases: read again unless the change token shows no write since the last read."""
        token, taken = slot.registry.change_token(), time.time()
        now = time.monotonic()
        unchanged = (token is not None and slot.aliases is not None and token == slot.token
                     and taken - token[1] > RACY_SECONDS and now - slot.read_at < FULL_READ_SECONDS)
        if unchanged:
            return slot.aliases
        slot.aliases = None  # a failed read below must not leave the old aliases trusted
        aliases = slot.registry.serving_aliases()
        slot.aliases, slot.token, slot.read_at, slot.reads = aliases, token, now, slot.reads + 1
        return aliases

    def _apply(self, slot: ModelSlot, plan: ServingPlan, previous: str | None) -> None:
        # New dicts, assigned whole: status() reads them from the event loop's thread meanwhile.
        wanted = [v for v in (*plan.versions, previous) if v]
        loaded, problems = dict(slot.loaded), {}  # a plan change retries a file that failed (it may be restored)
        for version in dict.fromkeys(wanted):
            if version not in loaded:
                try:
                    loaded[version] = prepare_for_scoring(slot.registry.load_model(version))  # off the request path
                except Exception as exc:  # noqa: BLE001 - a damaged or missing file: never served
                    problems[version] = f"{type(exc).__name__}: {exc}"
        if plan.champion is None:
            usable = None  # the registry has no champion (retired on purpose): stop serving the model
        elif plan.champion not in loaded:
            usable = slot.serving.plan if slot.serving is not None else None  # keep the last verified plan
        else:
            canary_ok = plan.canary in loaded
            usable = plan._replace(canary=plan.canary if canary_ok else None,
                                   canary_share=plan.canary_share if canary_ok else 0.0,
                                   canary_salt=plan.canary_salt if canary_ok else "",
                                   shadow=plan.shadow if plan.shadow in loaded else None)
        serving = slot.serving
        if usable is None:
            serving = None
        elif serving is None or serving.plan != usable:
            serving = load_plan(usable, loaded.__getitem__)
        keep = set(wanted) | (set(serving.plan.versions) if serving else set())
        slot.loaded = {v: m for v, m in loaded.items() if v in keep}
        slot.problems, slot.plan, slot.previous_champion = problems, plan, previous
        if serving is not slot.serving:
            slot.serving = serving  # the swap: one assignment
            if serving is not None:
                slot.swaps += 1
                if self._on_swap is not None:
                    self._on_swap(slot.name, serving.plan)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------------------------------------ status
    def status(self, name: str) -> dict:
        slot = self.slots[name]
        serving = slot.serving.plan if slot.serving is not None else None
        problems = [f"{v} is not served: {why}" for v, why in slot.problems.items()]
        if slot.plan is not None and slot.plan.champion is None:
            problems.append("the registry has no champion for this model")
        if serving is not None and slot.plan is not None and serving != slot.plan:
            problems.append("serving the last verified plan, not the registry's current one")
        return {
            "model": name, "ready": serving is not None,
            "champion": serving.champion if serving else None,
            "canary": serving.canary if serving else None,
            "canary_share": serving.canary_share if serving else 0.0,
            "shadow": serving.shadow if serving else None,
            "previous_champion": slot.previous_champion,
            "loaded_versions": sorted(slot.loaded),
            "registry_plan": slot.plan._asdict() if slot.plan is not None else None,
            "problems": problems,
        }

    def registry_status(self) -> dict:
        return {"readable": self.registry_error is None, "error": self.registry_error,
                "unreadable_since": self.registry_error_since, "last_read": self.last_read,
                "poll_seconds": self.poll_seconds}

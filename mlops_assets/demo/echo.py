"""What the replay prints as it goes: alerts as they start, change or clear, and registry transitions."""

from __future__ import annotations

import datetime as dt


def _first_clauses(reason: str, keep: int = 3) -> str:
    """A reason cut at clause boundaries: its first `keep` '; '-separated parts."""
    parts = reason.split("; ")
    return "; ".join(parts[:keep]) + ("; …" if len(parts) > keep else "")


class EventEcho:
    """Prints what a person wants to hear about as it happens: a monitoring alert when it starts, changes or
    clears (not again every day it persists), and every registry transition with its reason."""

    def __init__(self, project, seen_audit: int, last: dict[str, tuple[str, str]] | None = None):
        self.project, self.seen_audit = project, seen_audit
        self.last: dict[str, tuple[str, str]] = dict(last or {})  # asset -> (status, identity) last printed

    def day_done(self, day: dt.date) -> None:
        key = (day - dt.timedelta(days=1)).isoformat()  # the schedule scores and monitors yesterday
        self._alert(key, "data_drift_report", "data drift", self._drifted)
        self._alert(key, "performance_report", "performance", self._performance)
        audit = self.project.registry.audit_log()
        for entry in audit[self.seen_audit:]:
            if entry.action in ("register", "promote", "rollback", "canary_start", "canary_ramp", "restore"):
                target = f" → {entry.to_alias}" if entry.to_alias else ""
                why = f" ({_first_clauses(entry.reason)})" if entry.reason else ""
                if entry.action == "register":
                    why = f" ({self._gates(entry.version)})"
                print(f"  * {day} {entry.action} {entry.version}{target}{why}")
        self.seen_audit = len(audit)

    def _alert(self, key: str, asset: str, label: str, describe) -> None:
        """Print when the alert's status (and, for drift, its set of drifted features) changes."""
        store = self.project.store
        if not store.has_document(asset, key):
            return
        report = store.read_json(asset, key)
        status = report["status"]
        identity, detail = describe(report) if status != "OK" else ("", "")
        if (status, identity) != self.last.get(asset, ("OK", "")):
            print(f"  ! {key} {label} back to OK" if status == "OK" else f"  ! {key} {label} {status}: {detail}")
        self.last[asset] = (status, identity)

    @staticmethod
    def _drifted(report: dict) -> tuple[str, str]:
        # every monitored feature, whatever its weight (reports older than `monitored` counted weighted ones only)
        drifted = ", ".join(f["feature"] for f in report["features"]
                            if f["drifted"] and f.get("monitored", f["weight"] > 0))
        return drifted, f"{drifted} (weighted share {report['drift_share']:.2f})"

    @staticmethod
    def _performance(report: dict) -> tuple[str, str]:
        # reports written before the trailing window carry no message
        return "", report.get("message") or f"{report.get('key_metric', 'performance')} {report['status']}"

    def _gates(self, version: str) -> str:
        record = self.project.registry.get(version)
        failed = record.gate_report.get("failures", [])
        if not record.gates_passed:
            return f"stopped by gates: {', '.join(failed)}"
        canary = self.project.registry.version_for("canary")
        waits = f"; stays candidate while canary {canary} runs" if canary not in (None, version) else ""
        return f"all gates passed{waits}"

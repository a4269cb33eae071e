"""One campaign run: the fleet up, the workload and the nemesis for ``seconds``, every fault
healed, the fleet given time to finish, then the checker's verdict."""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.campaign.checker import Checker, Violation
from tests.campaign.fleet import Fleet
from tests.campaign.nemesis import Fault, Nemesis, Step, schedule
from tests.campaign.workload import Workload

QUIESCE_SECONDS = 180.0  # after the last fault, every batch must end within this


@dataclass
class Report:
    seed: int
    seconds: float
    steps: list[Step]
    history: list[Fault] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    workdir: str = ""
    took: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.violations

    def render(self) -> str:
        lines = [
            f"campaign seed {self.seed}: {'PASSED' if self.passed else 'FAILED'} "
            f"({self.seconds:.0f}s of faults, {self.took:.0f}s in all; replay: "
            f"python -m tests.campaign --seed {self.seed} --seconds {self.seconds:.0f})",
            "faults: "
            + ", ".join(f"{kind} x{count}" for kind, count in sorted(_count(self.history).items())),
            "figures: " + ", ".join(f"{k} {v}" for k, v in sorted(self.figures.items())),
        ]
        lines += [f"note: {note}" for note in self.notes[:20]]
        lines += [f"VIOLATION {violation}" for violation in self.violations[:50]]
        if not self.passed:
            lines.append(f"logs kept in {self.workdir}")
        return "\n".join(lines)


def _count(history: list[Fault]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for fault in history:
        counts[fault.kind] = counts.get(fault.kind, 0) + 1
    return counts


def run(seed: int, seconds: float, *, workers: int = 3, workdir: Path | None = None) -> Report:
    began = time.monotonic()
    steps = schedule(seed, seconds, workers)
    report = Report(seed, seconds, steps)
    keep = workdir is not None
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"campaign-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report.workdir = str(workdir)
    with Fleet(workdir, workers=workers, seed=seed) as fleet:
        workload = Workload(fleet, seed, random.Random(seed))
        nemesis = Nemesis(fleet, workload, steps)
        workload.start(seconds)
        nemesis.start()
        time.sleep(seconds)
        nemesis.stop()  # and heal
        workload.stop()
        _finish(fleet, workload)
        checker = Checker(fleet, workload, nemesis.history)
        report.violations = checker.check()
        report.history = nemesis.history
        if not report.passed:  # what the checker read, kept beside the logs
            _keep(workdir, checker, nemesis)
        report.figures = dict(checker.figures)
        report.notes = [*nemesis.errors, *workload.errors]
    report.took = time.monotonic() - began
    if report.passed and not keep:
        _remove(workdir)
    return report


def _finish(fleet: Fleet, workload: Workload) -> None:
    """Waits until every batch has ended (or the quiet time is up: the checker says which
    did not)."""
    from contract import keys

    deadline = time.monotonic() + QUIESCE_SECONDS
    pending = {batch.batch_id for batch in workload.batches}
    while pending and time.monotonic() < deadline:
        try:
            with fleet.client() as client:
                for batch_id in list(pending):
                    state = client.hget(keys.batch_meta(batch_id), "state")
                    if state is None or state.decode() in ("completed", "cancelled", "expired"):
                        pending.discard(batch_id)
        except Exception:  # Redis still coming back: look again
            pass
        time.sleep(0.5)


def _keep(workdir: Path, checker: Checker, nemesis: Nemesis) -> None:
    import dataclasses
    import json

    with (workdir / "ledger.jsonl").open("w") as out:
        for entry in checker.ledger:
            out.write(json.dumps(entry) + "\n")
    faults = [dataclasses.asdict(fault) for fault in nemesis.history]
    (workdir / "history.json").write_text(json.dumps(faults, indent=1))
    batches = [dataclasses.asdict(batch) for batch in checker.workload.batches]
    (workdir / "batches.json").write_text(json.dumps(batches, indent=1))


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = ["QUIESCE_SECONDS", "Report", "run"]

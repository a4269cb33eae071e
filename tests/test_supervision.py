"""Every long-lived loop of a worker is watched: one that dies is seen, said and acted on."""

from __future__ import annotations

import asyncio

from tests.conftest import eventually
from worker.lifecycle import Lifecycle, LifecycleError, State
from worker.supervision import Supervisor


async def test_a_loop_that_raises_is_reported_once() -> None:
    failures: list[tuple[str, str]] = []
    supervisor = Supervisor(lambda name, error: failures.append((name, repr(error))))

    async def broken() -> None:
        await asyncio.sleep(0)
        raise ValueError("unexpected")

    supervisor.start("broker", broken)
    await eventually(lambda: failures, what="the failure to be reported")
    assert failures == [("broker", "ValueError('unexpected')")]
    assert supervisor.failed == "broker loop died (ValueError)"
    await supervisor.stop()


async def test_a_loop_that_returns_is_a_failure_too() -> None:
    failures: list[str] = []
    supervisor = Supervisor(lambda name, error: failures.append(name))

    async def quits() -> None:
        return None

    supervisor.start("heartbeat", quits)
    await eventually(lambda: failures == ["heartbeat"], what="the early return to be reported")
    await supervisor.stop()


async def test_stopping_cancels_the_loops_quietly() -> None:
    failures: list[str] = []
    supervisor = Supervisor(lambda name, error: failures.append(name))
    supervisor.start("forever", lambda: asyncio.sleep(3600))
    assert supervisor.running == ["forever"]
    await supervisor.stop()
    assert failures == [] and supervisor.running == []


def test_the_lifecycle_refuses_the_wrong_transitions() -> None:
    lifecycle = Lifecycle()
    drained: list[bool] = []
    lifecycle.on_drain(lambda: drained.append(True))
    lifecycle.start()
    try:
        lifecycle.start()
    except LifecycleError as error:
        assert "running" in str(error)
    else:
        raise AssertionError("started twice")
    assert lifecycle.drain() and not lifecycle.drain()
    assert drained == [True] and lifecycle.draining.is_set()
    lifecycle.stop()
    assert lifecycle.state is State.STOPPED


def test_a_worker_whose_loop_died_exits_70_even_if_arqs_close_is_cancelled(monkeypatch) -> None:
    """Regression: 2 of 17 crash-loop exits ended with code 1 and a CancelledError trace
    from arq's close, not 70."""
    import asyncio

    from worker import jobs
    from worker.config import WorkerConfig

    class Dying:
        exit_code = 0

        def __init__(self, config: WorkerConfig, **_: object) -> None:
            pass

        def run(self) -> None:
            self.exit_code = jobs.EXIT_LOOP_DIED
            raise asyncio.CancelledError  # what arq's close let out

    monkeypatch.setattr(jobs, "ChunkWorker", Dying)
    monkeypatch.setattr(jobs, "use_uvloop", lambda: None)
    assert jobs.run_worker(WorkerConfig(redis_url="redis://127.0.0.1:1/0")) == 70

"""The brake on guessing keys, with a clock the test moves: a few wrong keys free, then waits
doubling up to a minute, per address and per key prefix, forgotten after a quiet while."""

from __future__ import annotations

from producer.http.throttle import (
    FORGET_AFTER_SECONDS,
    FREE_FAILURES,
    LONGEST_WAIT_SECONDS,
    TRACKED_AT_MOST,
    KeyThrottle,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_after_the_free_failures_up_to_a_minute() -> None:
    clock = Clock()
    brake = KeyThrottle(clock)
    for _ in range(FREE_FAILURES - 1):
        brake.failed("198.51.100.1", "sk-guess-aaaa")
        assert brake.wait("198.51.100.1", "sk-other-zzzz") == 0
    waits = []
    for _ in range(10):
        brake.failed("198.51.100.1", "sk-guess-aaaa")
        waits.append(brake.wait("198.51.100.1", "sk-other-zzzz"))
        clock.now += waits[-1]  # it waits, then tries again, wrong again
    assert waits[:4] == [1, 2, 4, 8] and max(waits) == LONGEST_WAIT_SECONDS
    assert brake.wait("203.0.113.9", "sk-fresh-key") == 0  # another client, another key


def test_a_shared_prefix_is_braked_from_many_addresses() -> None:
    brake = KeyThrottle(Clock())
    for n in range(FREE_FAILURES):
        brake.failed(f"198.51.100.{n}", f"sk-proj-{n:04d}")
    assert brake.wait("203.0.113.9", "sk-proj-9999") > 0  # a new address, the same prefix
    assert brake.wait("203.0.113.9", "sk-elsewhere") == 0


def test_a_quiet_client_starts_afresh_and_memory_stays_bounded() -> None:
    clock = Clock()
    brake = KeyThrottle(clock)
    for _ in range(FREE_FAILURES + 3):
        brake.failed("198.51.100.1", "sk-guess")
    clock.now += FORGET_AFTER_SECONDS + 1
    assert brake.wait("198.51.100.1", "sk-guess") == 0
    brake.failed("198.51.100.1", "sk-guess")
    assert brake.wait("198.51.100.1", "sk-guess") == 0  # one wrong key of a fresh count
    for n in range(TRACKED_AT_MOST + 10):
        brake.failed(f"10.0.{n // 256}.{n % 256}", f"k{n:07d}")
    assert len(brake._addresses._records) == TRACKED_AT_MOST

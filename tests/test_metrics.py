"""WorkerMetrics: the tallies the heartbeat reads, the Prometheus metrics and their endpoint."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from simulator.local import free_port
from worker.metrics import WorkerMetrics, parse_port_spec


@pytest.fixture
def metrics() -> Iterator[WorkerMetrics]:
    made = WorkerMetrics()
    yield made
    made.stop_server()


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def listening(port: int) -> socket.socket:
    """A socket holding ``port`` on 127.0.0.1, as another worker's endpoint would."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def two_free_ports(stack: ExitStack) -> int:
    """A port p with p + 1 free too; p is left held (by a listener in ``stack``)."""
    for _ in range(50):
        first = free_port()
        try:
            held = listening(first)
        except OSError:
            continue
        try:
            listening(first + 1).close()
        except OSError:
            held.close()
            continue
        stack.enter_context(held)
        return first
    raise AssertionError("found no two free ports in a row")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def test_prompts_by_outcome_and_error_type(metrics: WorkerMetrics) -> None:
    metrics.prompt_finished("succeeded", None)
    metrics.prompt_finished("succeeded", None)
    metrics.prompt_finished("failed", "Blocked")

    assert metrics.prompts == {"succeeded": 2, "failed": 1}
    name = "chatgptes_prompts_total"
    assert value(metrics, name, outcome="succeeded", error_type="", site="") == 2
    assert value(metrics, name, outcome="failed", error_type="Blocked", site="") == 1
    assert value(metrics, name, outcome="cancelled", error_type="", site="") is None


def test_chunks_done_counts_only_done(metrics: WorkerMetrics) -> None:
    metrics.chunk_finished("done")
    metrics.chunk_finished("handed back")
    assert metrics.chunks_done == 1


def test_upstream_errors_count_and_go_to_the_fleet(metrics: WorkerMetrics) -> None:
    metrics.upstream_error("RateLimited")
    metrics.upstream_error("RateLimited")
    metrics.upstream_error("Blocked")

    name = "chatgptes_upstream_errors_total"
    assert value(metrics, name, error_type="RateLimited", site="") == 2
    assert value(metrics, name, error_type="Blocked", site="") == 1
    assert metrics.fleet_deltas() == {"error:RateLimited": 2, "error:Blocked": 1}


def test_request_latency_histogram(metrics: WorkerMetrics) -> None:
    metrics.request_finished("ajax", 0.02)
    metrics.request_finished("ajax", 45.0)
    metrics.request_finished("page", 0.3)

    name = "chatgptes_upstream_request_seconds"
    assert value(metrics, f"{name}_count", kind="ajax") == 2
    assert value(metrics, f"{name}_sum", kind="ajax") == pytest.approx(45.02)
    assert value(metrics, f"{name}_bucket", kind="ajax", le="0.01") == 0
    assert value(metrics, f"{name}_bucket", kind="ajax", le="0.025") == 1
    assert value(metrics, f"{name}_bucket", kind="ajax", le="30.0") == 1
    assert value(metrics, f"{name}_bucket", kind="ajax", le="60.0") == 2
    assert value(metrics, f"{name}_count", kind="page") == 1


def test_capacity_waits_count_and_go_to_the_fleet(metrics: WorkerMetrics) -> None:
    metrics.capacity_wait("fleet_full")
    metrics.capacity_wait("cooling")
    metrics.capacity_wait("fleet_full")

    name = "chatgptes_capacity_waits_total"
    assert value(metrics, name, reason="fleet_full") == 2
    assert value(metrics, name, reason="cooling") == 1
    assert metrics.fleet_deltas() == {
        "waited_for_capacity:fleet_full": 2,
        "waited_for_capacity:cooling": 1,
        "waited_for_capacity": 3,
    }


def test_fleet_deltas_reset_and_restore(metrics: WorkerMetrics) -> None:
    metrics.upstream_error("Blocked")
    deltas = metrics.fleet_deltas()
    assert metrics.fleet_deltas() == {}

    metrics.upstream_error("Blocked")
    metrics.restore_fleet_deltas(deltas)  # the heartbeat could not write them
    assert metrics.fleet_deltas() == {"error:Blocked": 2}
    # Prometheus counters are not deltas: a failed heartbeat does not touch them.
    assert value(metrics, "chatgptes_upstream_errors_total", error_type="Blocked", site="") == 2


def test_session_refreshes(metrics: WorkerMetrics) -> None:
    assert value(metrics, "chatgptes_session_refreshes_total") == 0
    metrics.session_refreshed()
    metrics.session_refreshed()
    assert value(metrics, "chatgptes_session_refreshes_total") == 2


def test_gauges_follow_the_heartbeat(metrics: WorkerMetrics) -> None:
    metrics.gauges(in_flight=5, waiting=3, chunks=2)
    assert value(metrics, "chatgptes_requests_in_flight") == 5
    assert value(metrics, "chatgptes_leases_waiting") == 3
    assert value(metrics, "chatgptes_chunks_held") == 2

    metrics.gauges(in_flight=0, waiting=0, chunks=1)
    assert value(metrics, "chatgptes_requests_in_flight") == 0
    assert value(metrics, "chatgptes_leases_waiting") == 0
    assert value(metrics, "chatgptes_chunks_held") == 1


def test_identity_states_zero_the_states_left_out(metrics: WorkerMetrics) -> None:
    metrics.identity_states({"ready": 3, "cooling": 1, "blocked": 2})
    assert value(metrics, "chatgptes_identities", state="ready") == 3
    assert value(metrics, "chatgptes_identities", state="cooling") == 1
    assert value(metrics, "chatgptes_identities", state="blocked") == 2
    assert value(metrics, "chatgptes_identities", state="full") == 0

    metrics.identity_states({"ready": 4})
    assert value(metrics, "chatgptes_identities", state="ready") == 4
    assert value(metrics, "chatgptes_identities", state="cooling") == 0
    assert value(metrics, "chatgptes_identities", state="blocked") == 0


def test_queue_depth(metrics: WorkerMetrics) -> None:
    metrics.queue_depth(17)
    assert value(metrics, "chatgptes_queue_depth") == 17
    metrics.queue_depth(0)
    assert value(metrics, "chatgptes_queue_depth") == 0


def test_instances_do_not_share_metrics() -> None:
    one, other = WorkerMetrics(), WorkerMetrics()
    one.session_refreshed()
    assert value(one, "chatgptes_session_refreshes_total") == 1
    assert value(other, "chatgptes_session_refreshes_total") == 0


def test_the_endpoint_serves_every_metric(metrics: WorkerMetrics) -> None:
    metrics.prompt_finished("failed", "Blocked")
    metrics.upstream_error("Blocked")
    metrics.request_finished("ajax", 0.5)
    metrics.capacity_wait("rate")
    metrics.identity_states({"ready": 1})
    port = free_port()

    assert metrics.start_server(str(port), host="127.0.0.1") == port
    assert metrics.port == port
    text = scrape(port)

    for name in (
        'chatgptes_prompts_total{error_type="Blocked",outcome="failed",site=""} 1.0',
        'chatgptes_upstream_errors_total{error_type="Blocked",site=""} 1.0',
        'chatgptes_upstream_request_seconds_count{kind="ajax"} 1.0',
        'chatgptes_capacity_waits_total{reason="rate"} 1.0',
        "chatgptes_session_refreshes_total 0.0",
        "chatgptes_requests_in_flight 0.0",
        "chatgptes_leases_waiting 0.0",
        "chatgptes_chunks_held 0.0",
        'chatgptes_identities{state="ready"} 1.0',
        "chatgptes_queue_depth 0.0",
    ):
        assert name in text
    assert "python_gc" not in text  # the worker's own registry, not the global one


def test_stop_server_frees_the_port(metrics: WorkerMetrics) -> None:
    threads = set(threading.enumerate())
    port = free_port()
    metrics.start_server(str(port), host="127.0.0.1")
    metrics.stop_server()
    assert metrics.port is None
    assert set(threading.enumerate()) <= threads  # the serving thread is gone
    listening(port).close()  # bindable again
    metrics.stop_server()  # twice is harmless

    assert metrics.start_server(str(port), host="127.0.0.1") == port


def test_starting_twice_is_refused(metrics: WorkerMetrics) -> None:
    metrics.start_server(str(free_port()), host="127.0.0.1")
    with pytest.raises(RuntimeError, match="already served"):
        metrics.start_server(str(free_port()), host="127.0.0.1")


def test_a_range_binds_the_next_free_port(metrics: WorkerMetrics) -> None:
    with ExitStack() as stack:
        first = two_free_ports(stack)  # held, as by another worker on this host

        port = metrics.start_server(f"{first}-{first + 1}", host="127.0.0.1")

        assert port == first + 1
        assert "chatgptes_queue_depth" in scrape(port)


def test_two_workers_share_one_range() -> None:
    with ExitStack() as stack:
        first = two_free_ports(stack)
        stack.close()  # both free now
        one, other = WorkerMetrics(), WorkerMetrics()
        try:
            spec = f"{first}-{first + 1}"
            ports = {
                one.start_server(spec, host="127.0.0.1"),
                other.start_server(spec, host="127.0.0.1"),
            }
            assert ports == {first, first + 1}
        finally:
            one.stop_server()
            other.stop_server()


def test_a_range_with_no_free_port_names_it(metrics: WorkerMetrics) -> None:
    with ExitStack() as stack:
        first = two_free_ports(stack)
        stack.enter_context(listening(first + 1))
        spec = f"{first}-{first + 1}"

        with pytest.raises(OSError, match=f"every port of {spec} is in use"):
            metrics.start_server(spec, host="127.0.0.1")
        with pytest.raises(OSError, match=f"port {first} is in use"):
            metrics.start_server(str(first), host="127.0.0.1")
    assert metrics.port is None


@pytest.mark.parametrize("spec", [None, "", "  "])
def test_an_empty_spec_is_off(metrics: WorkerMetrics, spec: str | None) -> None:
    assert metrics.start_server(spec) is None
    assert metrics.port is None


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("abc", "'abc' is not a port"),
        ("0", "'0' is not a port"),
        ("65536", "'65536' is not a port"),
        ("9100-", "'' is not a port"),
        ("-9100", "'' is not a port"),
        ("9100-9109-9110", "'9109-9110' is not a port"),
        ("9109-9100", "the range ends before it starts"),
    ],
)
def test_a_bad_spec_is_a_clear_error(metrics: WorkerMetrics, spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as raised:
        metrics.start_server(spec)
    assert "CHATGPTES_METRICS_PORT" in str(raised.value)


def test_parse_port_spec() -> None:
    assert parse_port_spec("9100") == range(9100, 9101)
    assert parse_port_spec(" 9100 - 9109 ") == range(9100, 9110)
    assert parse_port_spec("9100-9100") == range(9100, 9101)
    assert parse_port_spec("") is None

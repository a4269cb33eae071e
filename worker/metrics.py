"""What one worker counts: for its registry entry, the fleet's counters and Prometheus.

The runtime, the runner, the broker and the session cache report here; nothing else in
the worker keeps tallies. ``fleet_deltas`` hands the fleet-wide counters (errors by type,
waits by reason) to the heartbeat, which adds them up in Redis for ``status`` and ``top``.

Each ``WorkerMetrics`` has its own Prometheus registry (never the global default), served
over HTTP by ``start_server`` when ``CHATGPTES_METRICS_PORT`` is set: one port
(``9100``) or a range (``9100-9109``) of which the worker takes the first free one, so
several workers on one host share one setting. The metrics, all of this worker only:

- ``chatgptes_prompts_total{outcome, error_type, site}``: prompts finished, by outcome
  (succeeded, failed, cancelled), error type ("" when none) and the site that answered;
- ``chatgptes_upstream_errors_total{error_type, site}``: failed exchanges with a site, by
  error class and site (the prompt may still succeed on a later attempt);
- ``chatgptes_upstream_request_seconds{kind}``: histogram of request latency to the
  site, ``page`` (handshake) or ``ajax`` (a prompt), whatever the outcome;
- ``chatgptes_capacity_waits_total{reason}``: prompts that waited long for capacity, by
  the last refusal (fleet_full, cooling, probing, proxy_full, rate, no_identity, ...);
- ``chatgptes_session_refreshes_total``: page handshakes that made a new site session;
- ``chatgptes_requests_in_flight``: requests holding a lease now;
- ``chatgptes_leases_waiting``: prompts waiting for a lease now;
- ``chatgptes_chunks_held``: arq jobs (chunks of prompts) held now;
- ``chatgptes_identities{state}``: identities (proxy exits) by state (ready, full,
  cooling, probing), as this worker last saw them;
- ``chatgptes_queue_depth``: chunks waiting in the arq queue. The queue is shared: every
  worker reports the same number, so aggregate it with ``max``, not ``sum``;
- ``chatgptes_chore_failures_total{chore}``: housekeeping chores that failed (each is
  tried again after a backoff, and shows in ``workers --check`` while it fails);
- ``chatgptes_webhook_deliveries_total{outcome}``: webhook deliveries by outcome:
  ``delivered`` and ``failed`` per endpoint and attempt, ``given_up`` per event and
  endpoint (72 hours of attempts are over), ``disabled`` when an endpoint answered 410 Gone.

The prompts finished are also tallied by interval for the console's throughput chart
(``throughput``, a ``contract.throughput.ThroughputTally``, written to Redis by its own
loop).

The gauges are set at every heartbeat, the counters as things happen.
"""

from __future__ import annotations

import errno
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

from contract.throughput import ThroughputTally

PREFIX = "chatgptes"
PORT_SETTING = "CHATGPTES_METRICS_PORT"

# Requests to the site: a cached page in tens of ms, a long answer in tens of seconds.
REQUEST_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
IDENTITY_STATES: tuple[str, ...] = ("ready", "full", "cooling", "probing")


def parse_port_spec(spec: str | None) -> range | None:
    """The ports ``CHATGPTES_METRICS_PORT`` allows: None when empty (off).

    ``"9100"`` is one port, ``"9100-9109"`` a range (both ends included). Anything else,
    port 0 or a range whose end is below its start is a ``ValueError`` saying why.
    """
    text = (spec or "").strip()
    if not text:
        return None
    first_text, dash, last_text = text.partition("-")
    first = _port(first_text, text)
    last = _port(last_text, text) if dash else first
    if last < first:
        raise ValueError(f"{PORT_SETTING}={text!r}: the range ends before it starts")
    return range(first, last + 1)


def _port(text: str, spec: str) -> int:
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(
            f"{PORT_SETTING}={spec!r}: {text!r} is not a port (1-65535); "
            "give one port like 9100 or a range like 9100-9109"
        )
    return int(text)


class WorkerMetrics:
    """The tallies of one worker: Python counters for its registry entry, Prometheus too."""

    def __init__(self) -> None:
        self.prompts: Counter[str] = Counter()
        self.chunks_done = 0
        self._fleet: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()
        self.throughput = ThroughputTally()
        self.registry = CollectorRegistry()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._identity_states: set[str] = set(IDENTITY_STATES)
        self._define_metrics()

    def _define_metrics(self) -> None:
        # Children of labelled metrics, once per label value (labels() costs a lookup).
        self._prompts_by_outcome: dict[tuple[str, str], Any] = {}
        self._seconds_by_kind: dict[str, Any] = {}
        registry = self.registry
        self._prompts_total = PromCounter(
            f"{PREFIX}_prompts",
            "Prompts finished, by outcome (succeeded, failed, cancelled), error type and the "
            "site that answered (or last refused) them.",
            ["outcome", "error_type", "site"],
            registry=registry,
        )
        self._upstream_errors = PromCounter(
            f"{PREFIX}_upstream_errors",
            "Failed exchanges with a site, by error class and site.",
            ["error_type", "site"],
            registry=registry,
        )
        self._request_seconds = Histogram(
            f"{PREFIX}_upstream_request_seconds",
            "Latency of requests to the site (page or ajax), whatever their outcome.",
            ["kind"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self._capacity_waits = PromCounter(
            f"{PREFIX}_capacity_waits",
            "Prompts that waited long for capacity, by the reason they were refused.",
            ["reason"],
            registry=registry,
        )
        self._session_refreshes = PromCounter(
            f"{PREFIX}_session_refreshes",
            "Page handshakes that made a new site session.",
            registry=registry,
        )
        self._in_flight = Gauge(
            f"{PREFIX}_requests_in_flight",
            "Requests of this worker holding a lease now.",
            registry=registry,
        )
        self._waiting = Gauge(
            f"{PREFIX}_leases_waiting",
            "Prompts of this worker waiting for a lease now.",
            registry=registry,
        )
        self._chunks = Gauge(
            f"{PREFIX}_chunks_held",
            "arq jobs (chunks of prompts) this worker holds now.",
            registry=registry,
        )
        self._identities = Gauge(
            f"{PREFIX}_identities",
            "Identities (proxy exits) by state (ready, full, cooling, probing).",
            ["state"],
            registry=registry,
        )
        self._queue_depth = Gauge(
            f"{PREFIX}_queue_depth",
            "Chunks waiting in the arq queue (shared: the same for every worker).",
            registry=registry,
        )
        self._chore_failures = PromCounter(
            f"{PREFIX}_chore_failures",
            "Housekeeping chores that failed (each is tried again after a backoff), by chore.",
            ["chore"],
            registry=registry,
        )
        self._webhook_deliveries = PromCounter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook deliveries by outcome: delivered or failed (per endpoint and attempt), "
            "given_up (per event).",
            ["outcome"],
            registry=registry,
        )

    def prompt_finished(self, status: str, error_type: str | None, site: str | None = None) -> None:
        """A prompt got its one result (succeeded, failed or cancelled), at ``site``."""
        self.prompts[status] += 1
        key = (status, error_type or "", site or "")
        counter = self._prompts_by_outcome.get(key)
        if counter is None:  # labels() costs a lookup and a check: once per label pair
            counter = self._prompts_by_outcome[key] = self._prompts_total.labels(*key)
        counter.inc()
        self.throughput.count(status, error_type, site)

    def chunk_finished(self, outcome: str) -> None:
        """A chunk ended: ``done``, or ``handed back`` to the queue."""
        if outcome == "done":
            self.chunks_done += 1

    def chore_failed(self, chore: str) -> None:
        """A housekeeping chore failed (not a Redis outage: a bug, a record nobody reads)."""
        self._chore_failures.labels(chore=chore).inc()

    def upstream_error(self, kind: str, site: str = "") -> None:
        """One exchange failed with this error class (the prompt may still succeed)."""
        self._fleet[f"error:{kind}"] += 1
        self._upstream_errors.labels(error_type=kind, site=site).inc()

    def request_finished(self, kind: str, seconds: float) -> None:
        """One request to the site ended (``page`` or ``ajax``), whatever its outcome."""
        histogram = self._seconds_by_kind.get(kind)
        if histogram is None:
            histogram = self._seconds_by_kind[kind] = self._request_seconds.labels(kind)
        histogram.observe(seconds)

    def capacity_wait(self, reason: str) -> None:
        """A prompt has waited long for capacity, because of ``reason``."""
        self._fleet[f"waited_for_capacity:{reason}"] += 1
        self._fleet["waited_for_capacity"] += 1
        self._capacity_waits.labels(reason=reason).inc()

    def session_refreshed(self) -> None:
        """A page handshake made a new site session."""
        self._session_refreshes.inc()

    def gauges(self, *, in_flight: int, waiting: int, chunks: int) -> None:
        """The worker's state now (set at every heartbeat)."""
        self._in_flight.set(in_flight)
        self._waiting.set(waiting)
        self._chunks.set(chunks)

    def identity_states(self, counts: Mapping[str, int]) -> None:
        """Identities by state now; a state seen before and missing from ``counts`` is 0."""
        self._identity_states.update(counts)
        for state in self._identity_states:
            self._identities.labels(state=state).set(counts.get(state, 0))

    def queue_depth(self, chunks: int) -> None:
        """Chunks waiting in the arq queue now."""
        self._queue_depth.set(chunks)

    def webhook_delivery(self, outcome: str) -> None:
        """A webhook attempt went ``delivered`` or ``failed``, an event was ``given_up``, or
        an endpoint ``disabled`` (410 Gone)."""
        self.webhooks[outcome] += 1
        self._webhook_deliveries.labels(outcome=outcome).inc()

    def fleet_deltas(self) -> dict[str, int]:
        """The fleet-wide counters since the last call, for the heartbeat to add up in Redis."""
        deltas, self._fleet = dict(self._fleet), Counter()
        return deltas

    def restore_fleet_deltas(self, deltas: dict[str, int]) -> None:
        """Puts back deltas the heartbeat could not write (Redis away): nothing is lost."""
        self._fleet.update(deltas)

    @property
    def port(self) -> int | None:
        """The port the metrics are served on, None when not serving."""
        return None if self._server is None else int(self._server.server_port)

    def start_server(self, port_spec: str | None, host: str = "0.0.0.0") -> int | None:
        """Serves the registry on the first free port of ``port_spec``; returns that port.

        An empty spec is off (None). A port of the spec taken by another process (another
        worker on this host) is skipped; when all are taken, ``OSError`` names the range.
        Other bind errors (no permission, unknown host) are raised as they are.
        """
        ports = parse_port_spec(port_spec)
        if ports is None:
            return None
        if self._server is not None:
            raise RuntimeError(f"metrics are already served on port {self.port}")
        for port in ports:
            try:
                self._server, self._thread = start_http_server(
                    port, addr=host, registry=self.registry
                )
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return port
        which = f"port {ports[0]} is" if len(ports) == 1 else f"every port of {port_spec} is"
        raise OSError(
            errno.EADDRINUSE,
            f"metrics: {which} in use on {host} ({PORT_SETTING}); "
            "free one, or give a range with a port for every worker on this host",
        )

    def stop_server(self) -> None:
        """Stops serving and frees the port (nothing when not serving)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

"""Every Redis key the service writes, named in one place.

The service's own keys live under ``chatgptes:``. Each one carries a Redis Cluster
hash tag, so that every script touches keys of one slot and declares them all:

- ``{<batch_id>}``: one batch's record, requests, results, job states and counts;
- ``{policy}``: the fleet's shared policy (leases, identities, sessions, cancels);
- ``{fleet}``: the registries of workers and batches that ``top`` reads;
- ``{webhooks}``: the outbox of batch-end events and their deliveries.

The scripts that end a batch also write its event to the outbox, in the same step
(keys of two slots, all declared; Redis Cluster is not supported: see the README).

arq keeps its queue, job and in-progress keys under its own ``arq:`` names; they
are built here too, so that nothing else spells them out.
"""

from __future__ import annotations

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

PREFIX = "chatgptes:"


def decoded(raw: bytes | str) -> str:
    """A key, member or field name as Redis hands it back (bytes) → str."""
    return raw.decode() if isinstance(raw, bytes) else raw


# One batch: everything under its own hash tag.
def _batch(batch_id: str, part: str) -> str:
    return f"{PREFIX}{{{batch_id}}}:{part}"


def batch_meta(batch_id: str) -> str:
    """Hash: the batch record (state, total, timestamps, chunking, metadata)."""
    return _batch(batch_id, "meta")


def batch_requests(batch_id: str) -> str:
    """Hash: prompt index → the request as enqueued (custom_id, messages, model)."""
    return _batch(batch_id, "requests")


def batch_results(batch_id: str) -> str:
    """Hash: prompt index → the prompt's one result, as its native JSON line."""
    return _batch(batch_id, "results")


def batch_states(batch_id: str) -> str:
    """String used as a bit field: 4 bits per prompt index, its state (see contract.states)."""
    return _batch(batch_id, "states")


def batch_counts(batch_id: str) -> str:
    """Hash: prompts per state, kept exact by every transition (never counted by a scan)."""
    return _batch(batch_id, "counts")


def batch_attempts(batch_id: str) -> str:
    """Hash: prompt index → failed attempts so far (JSON), kept across re-runs of its chunk."""
    return _batch(batch_id, "attempts")


def batch_attempt_log(batch_id: str) -> str:
    """Hash: prompt index → its last few failed attempts (JSON: when, error class, identity,
    site, a short message), for the console's page of the prompt; kept when it settles."""
    return _batch(batch_id, "attempt-log")


def batch_chunks(batch_id: str) -> str:
    """Set: the arq job IDs of the batch's chunks, for ``cancel``."""
    return _batch(batch_id, "chunks")


def batch_openai(batch_id: str) -> str:
    """Hash: what the OpenAI-compatible API adds to a batch it created (input file, endpoint)."""
    return _batch(batch_id, "openai")


def batch_keys(batch_id: str) -> list[str]:
    """Every key of one batch, in one slot."""
    return [
        batch_meta(batch_id),
        batch_openai(batch_id),
        batch_requests(batch_id),
        batch_results(batch_id),
        batch_states(batch_id),
        batch_counts(batch_id),
        batch_attempts(batch_id),
        batch_attempt_log(batch_id),
        batch_chunks(batch_id),
    ]


# Files uploaded to the OpenAI-compatible API, each under its own hash tag.
def file_meta(file_id: str) -> str:
    """Hash: an uploaded file's name, purpose, size, line count and creation time."""
    return f"{PREFIX}{{{file_id}}}:file"


def file_content(file_id: str) -> str:
    """String: an uploaded file's bytes (a batch input, JSONL)."""
    return f"{PREFIX}{{{file_id}}}:content"


def file_upload(file_id: str) -> str:
    """String: an upload's bytes while they arrive (renamed to ``file_content`` once whole;
    a short TTL ends an upload that never finished)."""
    return f"{PREFIX}{{{file_id}}}:upload"


# arq's own keys.
def arq_job(job_id: str) -> str:
    return f"{job_key_prefix}{job_id}"


def arq_in_progress(job_id: str) -> str:
    return f"{in_progress_key_prefix}{job_id}"


def arq_retry(job_id: str) -> str:
    return f"{retry_key_prefix}{job_id}"


# The fleet's shared policy, under one hash tag (see worker.leases, worker.sessions).
POLICY = f"{PREFIX}{{policy}}:"


def lease_tokens() -> str:
    """Sorted set: lease token (``identity|random``) → expiry (ms), every lease of the fleet."""
    return f"{POLICY}leases"


def identities_ready(pool: str) -> str:
    """Sorted set: identity → how loaded it is (lower is better), one pool's with room now."""
    return f"{POLICY}ready:{pool}"


def identities_later(pool: str) -> str:
    """Sorted set: identity → when (ms) it may have room again (rate, cooldown, full, probe)."""
    return f"{POLICY}later:{pool}"


def identities_known() -> str:
    """Sorted set: identity → when (ms) a worker last announced it (the pool registry)."""
    return f"{POLICY}identities"


def pool_filed(pool: str) -> str:
    """Hash: identity → the state it was last filed in, in one pool (for the counts)."""
    return f"{POLICY}filed:{pool}"


def pool_state_counts(pool: str) -> str:
    """Hash: state → how many of one pool's identities were last filed in it."""
    return f"{POLICY}states:{pool}"


def room_marker() -> str:
    """List: one item per lease slot freed; a worker waiting on a full fleet blocks on it."""
    return f"{POLICY}room"


def identity_pools() -> str:
    """Sorted set: pool ID → when (ms) a worker last announced that list of identities."""
    return f"{POLICY}pools"


def identity_field(attribute: str) -> str:
    """Hash: identity → one attribute (cap, interval, weight, inflight, tat, penalty, …)."""
    return f"{POLICY}identity:{attribute}"


def policy_events() -> str:
    """Hash: fleet-wide counters of what the policy did; a fixed, small set of fields."""
    return f"{POLICY}events"


def unfinished_stops() -> str:
    """Sorted set: batch ID → when (ms) its stop began, the stops not taken to their end
    yet (the housekeeper resumes these, never reading every stop mark)."""
    return f"{POLICY}stopping"


def stop_marks_by_age() -> str:
    """Sorted set: batch ID → when (ms) its stopped mark was written, to drop the old ones
    a few at a time."""
    return f"{POLICY}stopped-at"


def stopped_batches() -> str:
    """Hash: batch ID → why it stopped (``cancelled`` or ``expired``) and when (``why ms``).

    No lease is granted for these; prompts held for them end with that reason.
    """
    return f"{POLICY}stopped"


def site_health() -> str:
    """Hash: ``<site>:<field>`` → the health of each site of a fleet of several: ``ok`` (ms
    of its last answer), ``down_until`` (ms), ``reason`` (the error that took it down),
    ``probe`` (1 while it comes back one request at a time), ``probe_out`` (ms), ``downs``
    (times in a row it went down), ``strikes`` (failures since its last answer)."""
    return f"{POLICY}sites"


def site_failures(site: str) -> str:
    """Sorted set: identity → when (ms) it last failed at ``site`` in a way that may be the
    site's (5xx, reset, timeout, challenge page, no chat on the page, proxy fault)."""
    return f"{POLICY}site-failures:{site}"


def site_sessions() -> str:
    """Hash: identity → its site session (nonce, post id, cookies) as JSON."""
    return f"{POLICY}sessions"


def site_session_uses() -> str:
    """Hash: identity → POSTs its current site session has served."""
    return f"{POLICY}session-uses"


def site_session_lock(identity: str) -> str:
    """String: held by the one worker refreshing the identity's session (expires)."""
    return f"{POLICY}session-lock:{identity}"


# Registries that `top`, `workers` and `batches` read instead of scanning the keyspace.
FLEET = f"{PREFIX}{{fleet}}:"


def workers_seen() -> str:
    """Sorted set: worker ID → when (ms) it last reported."""
    return f"{FLEET}workers"


def worker_info(worker_id: str) -> str:
    """Hash: one worker's last report (host, pid, queue, in flight, done); expires."""
    return f"{FLEET}worker:{worker_id}"


def chunk_lapses() -> str:
    """Hash: chunk ID → its lapses: claims of it that did not end cleanly (holders that
    died or were cut off with it), plus the one holding it now. A chunk that keeps taking
    its holders down is recognised by it (``CHATGPTES_CHUNK_LAPSE_LIMIT``)."""
    return f"{FLEET}chunk-lapses"


def fleet_beat() -> str:
    """String: when (ms, Redis's clock) the last heartbeat of any worker was processed."""
    return f"{FLEET}beat"


def fleet_quiet_end() -> str:
    """String: when (ms) the fleet's heartbeats came back after a silence long enough to
    lapse claims (Redis stalled, or every worker paused): lapsed chunks wait a claim TTL
    from then before another worker may take them, so their live holders speak first."""
    return f"{FLEET}quiet-end"


# A queue's chunks: waiting (arq's queue), held (claimed), and where the held ones stood.
def held_chunks(queue_name: str) -> str:
    """Sorted set: chunk ID → when (ms) its claim lapses unless renewed; the chunks of one
    queue a worker holds (they leave the queue while held: a claim finds the next free
    chunk at the queue's head, wherever the held ones were)."""
    return f"{queue_name}:held"


def chunk_places(queue_name: str) -> str:
    """Hash: chunk ID → its place in the queue (score) when it was claimed, where it goes
    back if it is handed back or lapses."""
    return f"{queue_name}:places"


def work_marker(queue_name: str) -> str:
    """List: an item per chunk made claimable (published, handed back, lapsed, split); an
    idle worker blocks on it instead of polling the queue."""
    return f"{queue_name}:work"


def active_batches(queue_name: str) -> str:
    """Sorted set: batch ID → when (ms) it was published or queued again, the batches of
    one queue that may still have prompts to run (the stranded sweep walks these only;
    it drops those that ended)."""
    return f"{queue_name}:active"


def housekeeper() -> str:
    """String: the token of the one worker doing the fleet's chores (expiry, stops, sweeps)."""
    return f"{FLEET}housekeeper"


def batches_created() -> str:
    """Sorted set: batch ID → when it was created (ms), newest last."""
    return f"{FLEET}batches"


DEFAULT_PROJECT = "default"


def project_batches(project: str) -> str:
    """Sorted set: batch ID → when it was created (ms), the API batches of one project other
    than ``default`` (whose batches, the CLI's among them, ``batches_created`` lists)."""
    return f"{FLEET}batches:{project}"


def files_created(project: str = DEFAULT_PROJECT) -> str:
    """Sorted set: file ID → when it was uploaded (ms), one project's files (its uploads and
    its API batches' result files), for listing them without a scan."""
    return f"{FLEET}files" if project == DEFAULT_PROJECT else f"{FLEET}files:{project}"


def batch_deadlines() -> str:
    """Sorted set: batch ID → when its completion window ends (ms), for the expiry sweep."""
    return f"{FLEET}deadlines"


# Webhooks: the events that tell a batch ended, until a worker delivered them everywhere.
WEBHOOKS = f"{PREFIX}{{webhooks}}:"


def webhook_outbox() -> str:
    """Sorted set: event ID → when (ms) it is due to be routed to its endpoints' queues
    (while a worker routes it: when that worker's claim lapses). Written by the scripts
    that end batches; bounded."""
    return f"{WEBHOOKS}outbox"


def webhook_event(event_id: str) -> str:
    """Hash: one event: its body as sent, batch, type, the endpoints it goes to and those
    done, per endpoint its claim's token, attempts and last error; expires (deleted once
    every endpoint is done with it)."""
    return f"{WEBHOOKS}event:{event_id}"


def webhook_queue(endpoint: str) -> str:
    """Sorted set: event ID → when (ms) its next attempt at one endpoint (by its key) is
    due; each endpoint's deliveries go on apart from the others'. Bounded."""
    return f"{WEBHOOKS}queue:{endpoint}"


def webhook_endpoints() -> str:
    """Hash: endpoint key → JSON ``{project, label, seen_ms}``: the endpoints the workers
    are configured with (by their labels only), announced while they run."""
    return f"{WEBHOOKS}endpoints"


def webhook_health() -> str:
    """Hash: ``<endpoint key>:<what>`` → how its deliveries go: ``failing_since`` (ms),
    ``last_error``, ``last_ok`` (ms), ``disabled`` (ms) and ``disabled_why`` (a 410 Gone),
    ``dropped`` (events its full queue let go)."""
    return f"{WEBHOOKS}health"


def webhook_failed() -> str:
    """Sorted set: event ID → when (ms) its delivery was given up (the newest kept)."""
    return f"{WEBHOOKS}failed"


def webhook_deliverers() -> str:
    """Sorted set: worker ID → when (ms) it last looked for events to deliver."""
    return f"{WEBHOOKS}deliverers"


def console_session(digest: str) -> str:
    """Hash: one signed-in console session (by the SHA-256 of its cookie's ID): the tag of
    the key it was opened with, when; expires with the session, deleted at sign-out."""
    return f"{FLEET}console-session:{digest}"


def throughput() -> str:
    """Hash: ``<interval start (s)>|<what>`` → prompts the fleet finished in that interval
    (succeeded, failed, cancelled, error:<Type>); intervals older than an hour are dropped."""
    return f"{FLEET}throughput"

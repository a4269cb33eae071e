"""Every Redis key the service writes, named in one place.

The service's own keys live under ``chatgptes:``; arq keeps its queue, job and
in-progress keys under its own ``arq:`` names, which are built here too so that
nothing else spells them out.
"""

from __future__ import annotations

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

PREFIX = "chatgptes:"


def decoded(raw: bytes | str) -> str:
    """A key, member or field name as Redis hands it back (bytes) → str."""
    return raw.decode() if isinstance(raw, bytes) else raw


def batch_meta(batch_id: str) -> str:
    """Hash: total, created_at, model, queue — the batch record."""
    return f"{PREFIX}batch:{batch_id}"


def batch_jobs(batch_id: str) -> str:
    """List: the batch's job IDs in input order."""
    return f"{PREFIX}batch:{batch_id}:jobs"


def batch_requests(batch_id: str) -> str:
    """Hash: job ID → the request as enqueued (kept for ``retry`` and ``job``)."""
    return f"{PREFIX}batch:{batch_id}:requests"


def batch_set(batch_id: str, state: str) -> str:
    """Set of job IDs in one state: running, waiting, succeeded, failed, cancelled."""
    return f"{PREFIX}batch:{batch_id}:{state}"


def result(job_id: str) -> str:
    """String: the job's result JSON."""
    return f"{PREFIX}result:{job_id}"


def attempts(job_id: str) -> str:
    """Hash: attempts spent per error class, kept across arq retries of one job."""
    return f"{PREFIX}attempts:{job_id}"


def arq_job(job_id: str) -> str:
    return f"{job_key_prefix}{job_id}"


def arq_in_progress(job_id: str) -> str:
    return f"{in_progress_key_prefix}{job_id}"


def arq_retry(job_id: str) -> str:
    return f"{retry_key_prefix}{job_id}"


# Policy state shared by all workers (see worker.leases, worker.health, worker.sessions).
def lease_fleet() -> str:
    """Sorted set: lease token → expiry (ms), all leases of the fleet."""
    return f"{PREFIX}lease:fleet"


def lease_identity(identity: str) -> str:
    """Sorted set: lease token → expiry (ms), the leases held on one identity."""
    return f"{PREFIX}lease:identity:{identity}"


def rate_identity(identity: str) -> str:
    """String: the identity's GCRA theoretical arrival time (ms)."""
    return f"{PREFIX}rate:identity:{identity}"


def health(identity: str) -> str:
    """Hash: penalty, cooldown_until, reason, probe — one identity's health."""
    return f"{PREFIX}health:{identity}"


def site_session(identity: str) -> str:
    """String: the cached site session (nonce, post id, cookies) for one identity."""
    return f"{PREFIX}session:{identity}"


def site_session_uses(identity: str) -> str:
    """Integer: POSTs the cached session has served."""
    return f"{PREFIX}session:{identity}:uses"


def site_session_lock(identity: str) -> str:
    """String: held by the one worker refreshing the identity's session."""
    return f"{PREFIX}session:{identity}:lock"


def policy_events() -> str:
    """Hash: counters of what the policy did (waits, deferrals, cooldowns), fleet-wide."""
    return f"{PREFIX}policy:events"

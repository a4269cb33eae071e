"""The root of every error this service raises on purpose: ``ServiceError``.

Callers catch the branch they mean; a bare ``except ServiceError`` catches what the
service itself decided, and nothing that is a bug (a ``KeyError``, a ``TypeError``)
or a library's (redis-py's ``ConnectionError``). Where a class also has a builtin base
(``ValueError``, ``LookupError``), that base says what kind of refusal it is::

    ServiceError
    ├── contract.batches.ClaimLost           an enqueue lost its batch ID to another
    ├── contract.batches.RetryRefused        retry of a batch that is stopped or gone
    ├── producer.api.BatchExists             a batch ID already taken
    ├── producer.api.BatchNotFound           no such batch
    ├── producer.api.JobNotFound             no such job
    ├── producer.input_problems.InputFileError    a prompts file refused (which lines, why)
    ├── producer.http.errors.ApiError        an HTTP API request refused (OpenAI's error body)
    ├── worker.proxies.ProxyConfigError      a proxy list that cannot be used
    ├── worker.transport.BrowserConfigError  a browser curl cannot impersonate
    ├── worker.errors.UpstreamError          the site's answer, typed (its own tree there)
    ├── worker.broker.BatchStopped           a prompt's batch was cancelled or expired
    ├── worker.broker.Draining               the worker stops: the prompt goes back unsent
    ├── worker.broker.NoCapacityError        no identity had room for too long
    ├── worker.runner.ChunkLost              another worker holds the prompt's chunk now
    ├── worker.lifecycle.LifecycleError      a worker's wrong transition (start twice)
    └── worker.chunks.ChunkStateError        a chunk's wrong transition
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error this service raises on purpose (see the tree above)."""


__all__ = ["ServiceError"]

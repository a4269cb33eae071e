"""A redis-server of a test's own that demands a password, for the secrets tests.

It runs on a free port with ``requirepass`` (and, optionally, an ACL user), and is
stopped by the context manager whatever happened. Its ``maxmemory`` is ours to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from simulator import local


def answers(port: int, password: str) -> bool:
    try:
        with redis.Redis(port=port, password=password, socket_connect_timeout=0.2) as client:
            return bool(client.ping())
    except redis.ConnectionError:  # not up yet (AuthenticationError is one too)
        return False


@contextmanager
def redis_with_password(
    workdir: Path, password: str, *, user: str | None = None, token: str | None = None
) -> Iterator[int]:
    """The port of a redis-server demanding ``password`` (for ``default``, and for ``user``
    if given); ``token``, if given, is a user name that logs in alone (``nopass``), as a
    gateway token does. Both may do anything."""
    port = local.free_port()
    argv = [*local.redis_argv(workdir, port), "--requirepass", password]
    process = local.start_process(argv, log=workdir / f"redis-{port}.log")
    try:
        local.wait_until(lambda: answers(port, password), timeout=10,
                         what="the password-protected redis-server to answer")  # fmt: skip
        with redis.Redis(port=port, password=password) as client:
            if user is not None:
                client.acl_setuser(user, enabled=True, passwords=[f"+{password}"],
                                   keys=["*"], channels=["*"], commands=["+@all"])  # fmt: skip
            if token is not None:
                client.acl_setuser(token, enabled=True, nopass=True,
                                   keys=["*"], channels=["*"], commands=["+@all"])  # fmt: skip
        yield port
    finally:
        local.stop_process(process)

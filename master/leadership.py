"""Exactly one scheduler: a lease in Redis that the active master renews as it works.

Two schedulers reading the event stream would apply a trial's events out of order (an
ENDED before its last EPOCH, which is then dropped) and judge each other's work. A master
started while another one's scheduler holds the lease serves its API as usual and keeps its
scheduler standing by; it takes over within SCHEDULER_LEASE_SECONDS of the active one dying
(at once when that one shuts down cleanly and lets the lease go).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable

from redis import Redis

LEASE_KEY = "hpsearch:scheduler"

# Take the lease if nobody holds it, renew it if we do; 1 if we hold it now.
_HOLD = """
local holder = redis.call('get', KEYS[1])
if holder == false then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
elseif holder == ARGV[1] then
    redis.call('pexpire', KEYS[1], ARGV[2])
    return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def holder_name() -> str:
    """This process, as other masters and /api/health name it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# The share of the lease after which a holder renews it. The scheduler passes several times
# a second while workers report; a round trip to renew on each was 4% of the master's CPU in
# a budget sweep, and the lease is surely held for its whole length after a renewal anyway.
RENEW_SHARE = 0.1


class SchedulerLease:
    def __init__(
        self,
        redis: Redis,
        seconds: float,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.milliseconds = int(seconds * 1000)
        self.holder = holder or holder_name()
        self.clock = clock
        self.renew_seconds = seconds * RENEW_SHARE
        # When the last renewal that Redis confirmed was sent (clock): the lease runs until
        # at least that plus its length.
        self._renewed: float | None = None
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take or renew the lease (renewed at most every renew_seconds while held); whether
        this master holds it now."""
        now = self.clock()
        if self._renewed is not None and now - self._renewed < self.renew_seconds:
            return True
        self._renewed = None
        held = bool(self._hold(keys=[LEASE_KEY], args=[self.holder, self.milliseconds]))
        if held:
            self._renewed = now
        return held

    def forget(self) -> None:
        """Renew at the next hold(), whenever it comes: after Redis went away, the key may
        have gone with it."""
        self._renewed = None

    def release(self) -> None:
        """Let a standby take over now, if we hold the lease."""
        self._renewed = None
        self._release(keys=[LEASE_KEY], args=[self.holder])

    def current_holder(self) -> str | None:
        value = self.redis.get(LEASE_KEY)
        return value.decode() if isinstance(value, bytes) else value

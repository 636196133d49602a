"""Exactly one scheduler: a lease in Redis that the active master renews on every pass.

Two schedulers reading the event stream would apply a trial's events out of order (an
ENDED before its last EPOCH, which is then dropped) and judge each other's work. A master
started while another one's scheduler holds the lease serves its API as usual and keeps its
scheduler standing by; it takes over within SCHEDULER_LEASE_SECONDS of the active one dying
(at once when that one shuts down cleanly and lets the lease go).
"""

from __future__ import annotations

import os
import socket
import uuid

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


class SchedulerLease:
    def __init__(self, redis: Redis, seconds: float, holder: str | None = None) -> None:
        self.redis = redis
        self.milliseconds = int(seconds * 1000)
        self.holder = holder or holder_name()
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take or renew the lease; whether this master holds it now."""
        return bool(self._hold(keys=[LEASE_KEY], args=[self.holder, self.milliseconds]))

    def release(self) -> None:
        """Let a standby take over now, if we hold the lease."""
        self._release(keys=[LEASE_KEY], args=[self.holder])

    def current_holder(self) -> str | None:
        value = self.redis.get(LEASE_KEY)
        return value.decode() if isinstance(value, bytes) else value

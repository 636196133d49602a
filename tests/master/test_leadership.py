"""The scheduler lease against a real Redis, with the holder's clock injected: renewals are
throttled while the lease is surely held, and never trusted past that."""

from __future__ import annotations

from redis import Redis

from master.leadership import LEASE_KEY, SchedulerLease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_holder_renews_only_once_a_tenth_of_the_lease_has_passed(redis: Redis) -> None:
    clock = Clock()
    lease = SchedulerLease(redis, seconds=10.0, holder="a", clock=clock)
    assert lease.hold()
    redis.pexpire(LEASE_KEY, 5_000)  # what is left after 5 s without a renewal

    clock.now += 0.9
    assert lease.hold()
    assert redis.pttl(LEASE_KEY) <= 5_000  # not renewed: no round trip

    clock.now += 0.2
    assert lease.hold()
    assert redis.pttl(LEASE_KEY) > 9_000  # renewed to the whole lease


def test_a_holder_whose_lease_was_taken_learns_it_at_its_next_renewal(redis: Redis) -> None:
    clock = Clock()
    lease = SchedulerLease(redis, seconds=10.0, holder="a", clock=clock)
    assert lease.hold()
    redis.delete(LEASE_KEY)  # expired (a long stall), and another master took it
    assert SchedulerLease(redis, seconds=10.0, holder="b").hold()

    clock.now += 1.1
    assert not lease.hold()
    clock.now += 0.01
    assert not lease.hold()  # not trusted again until a renewal succeeds
    assert redis.get(LEASE_KEY) == b"b"


def test_forget_makes_the_next_hold_ask_redis(redis: Redis) -> None:
    clock = Clock()
    lease = SchedulerLease(redis, seconds=10.0, holder="a", clock=clock)
    assert lease.hold()
    redis.delete(LEASE_KEY)  # Redis restarted without its data
    lease.forget()
    assert lease.hold()
    assert redis.get(LEASE_KEY) == b"a"  # taken again at once


def test_release_lets_another_master_take_the_lease(redis: Redis) -> None:
    lease = SchedulerLease(redis, seconds=10.0, holder="a", clock=Clock())
    assert lease.hold()
    lease.release()
    assert SchedulerLease(redis, seconds=10.0, holder="b").hold()
    assert not lease.hold()

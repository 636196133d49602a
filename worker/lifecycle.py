"""What the worker process tells the trial it is running, between stop polls.

The trial runs in the worker's own process (worker.runner), so these are plain in-process
flags; the trainer's stop poll (worker.jobs) reads them.
"""

from __future__ import annotations

import threading

# Set on the worker's first SIGTERM/SIGINT: the running trial checkpoints, ends, and is
# re-queued by the master to resume elsewhere.
SHUTTING_DOWN = threading.Event()

# Job ids of attempts that a newer attempt at the same trial has taken over (the master
# re-queued the trial while this worker was cut off from Redis): they end without a word.
SUPERSEDED: set[str] = set()

# Job id -> when (time.monotonic) its lease was last renewed. A trial writes its files only
# while its lease is surely held (worker.jobs): a worker cut off from Redis for longer may
# have had the trial given to another worker.
LEASE_RENEWED: dict[str, float] = {}

"""The run's infrastructure faults, each started when a share of the requests is done (so
they land mid-load whatever this machine's speed): two DynamoDB pauses through the local
DynamoDB's faults API, and a replica stopped with SIGSTOP, then resumed with SIGCONT."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from devstack.chaos.client import Progress
from devstack.chaos.stack import Stack


@dataclass(frozen=True)
class Fault:
    kind: str  # "dynamodb_pause" or "replica_pause"
    at_share: float  # of the requests done
    seconds: float


@dataclass
class Timeline:
    events: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.events.append((time.monotonic() - self.started, what))


def default_faults(*, dynamodb_seconds: float, replica_seconds: float) -> list[Fault]:
    return [
        Fault("dynamodb_pause", 0.2, dynamodb_seconds),
        Fault("replica_pause", 0.35, replica_seconds),
        Fault("dynamodb_pause", 0.6, dynamodb_seconds),
    ]


async def inject(
    stack: Stack,
    faults: list[Fault],
    *,
    total: int,
    progress: Progress,
    timeline: Timeline,
) -> None:
    """Each fault once its share of `total` is done; returns when all have ended."""

    async def one(fault: Fault) -> None:
        await progress.reached(fault.at_share * total)
        if fault.kind == "dynamodb_pause":
            await asyncio.to_thread(stack.faults.set, paused=True)
            timeline.note(f"DynamoDB paused ({progress.done} requests done)")
            await asyncio.sleep(fault.seconds)
            await asyncio.to_thread(stack.faults.set, paused=False)
            timeline.note("DynamoDB resumed")
        else:
            replica = stack.replicas[-1]
            replica.pause()
            timeline.note(f"{replica.name} SIGSTOP ({progress.done} requests done)")
            await asyncio.sleep(fault.seconds)
            replica.resume()
            timeline.note(f"{replica.name} SIGCONT")

    await asyncio.gather(*(one(f) for f in faults))

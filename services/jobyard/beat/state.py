"""What a beat process knows about itself, for metrics and health checks to read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BeatState:
    """Live facts about one beat process, updated by the beat loop.

    Plain attributes read without locking: each is replaced whole, so a reader in another
    thread (a metrics collector) sees a consistent value of each.
    """

    beat_id: str
    """This process's lease value: hostname, pid and a random suffix."""
    is_leader: bool = False
    """This beat holds the lease and Redis answered at its last tick."""
    leader_since: float | None = None
    """Unix time this beat last became the leader."""
    last_tick_at: float | None = None
    """Unix time of the last tick this beat ran as the leader."""
    last_run_at: dict[str, float] = field(default_factory=dict)
    """Schedule name -> due time of the last run this beat sent."""
    runs_sent: dict[str, int] = field(default_factory=dict)
    """Schedule name -> runs this beat sent."""
    runs_skipped: dict[str, int] = field(default_factory=dict)
    """Schedule name -> missed runs this beat skipped (`missed: skip`)."""
    delayed_promoted: int = 0
    """Delayed jobs this beat moved to their queue."""
    delayed_dropped: int = 0
    """Due delayed jobs dropped because their record no longer said `scheduled`."""
    unacked_restored: int = 0
    """Expired unacknowledged messages this beat put back in their queue."""
    orphans_republished: int = 0
    """Jobs whose message was lost in transit that this beat published again."""

"""Reports over every matching job, computed in the database: dead letters
grouped by error, and throughput per minute."""

from __future__ import annotations

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.limits import MAX_PAGE_SIZE, validate_topic
from pulsed.database import Cursor
from pulsed.jobs import ERROR_SIGNATURE, to_timestamp

DEFAULT_GROUPS = 100
DEFAULT_MINUTES = 60
MAX_MINUTES = 1440

# Grouped over every dead letter; the newest job of each group is its sample
# (UUIDv7 ids sort by creation; uuid has no max(), text does). A sample
# requeued or pruned meanwhile leaves its group without a sample error rather
# than dropping the group.
DEAD_LETTER_GROUPS = f"""
WITH grouped AS (
    SELECT topic, {ERROR_SIGNATURE} AS signature, count(*) AS jobs,
           min(finished_at) AS first_seen, max(finished_at) AS last_seen,
           max(id::text)::uuid AS sample_id
    FROM jobs
    WHERE status = 'dead_lettered' AND (%(topic)s = '' OR topic = %(topic)s)
    GROUP BY topic, signature
    ORDER BY jobs DESC, last_seen DESC, topic, signature
    LIMIT %(limit)s
)
SELECT g.topic, g.signature, coalesce(j.last_error, ''), g.sample_id, g.jobs,
       g.first_seen, g.last_seen
FROM grouped g LEFT JOIN jobs j ON j.id = g.sample_id
ORDER BY g.jobs DESC, g.last_seen DESC, g.topic, g.signature
"""

# Every minute of the window, the current one included, at the database's
# clock. The status list implies the predicate of jobs_finished_idx, so the
# window is one range scan of that index, however many jobs are older.
THROUGHPUT = """
WITH window_start AS (
    SELECT date_trunc('minute', now()) - (%(minutes)s - 1) * interval '1 minute'
        AS start
), finished AS (
    SELECT date_trunc('minute', finished_at) AS minute,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'dead_lettered') AS dead_lettered
    FROM jobs
    WHERE status IN ('completed', 'dead_lettered')
      AND finished_at >= (SELECT start FROM window_start)
    GROUP BY 1
)
SELECT m.minute, coalesce(f.completed, 0), coalesce(f.dead_lettered, 0)
FROM window_start w,
     generate_series(w.start, date_trunc('minute', now()), interval '1 minute')
         AS m(minute)
LEFT JOIN finished f ON f.minute = m.minute
ORDER BY m.minute
"""


def dead_letter_groups(
    cur: Cursor, request: pb.ListDeadLetterGroupsRequest
) -> pb.ListDeadLetterGroupsResponse:
    """Dead-lettered jobs by topic and error signature, largest group first."""
    if request.topic:
        validate_topic(request.topic)
    limit = request.limit or DEFAULT_GROUPS
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"limit {limit} is out of range 1..{MAX_PAGE_SIZE}")
    cur.execute(DEAD_LETTER_GROUPS, {"topic": request.topic, "limit": limit})
    return pb.ListDeadLetterGroupsResponse(
        groups=[
            pb.DeadLetterGroup(
                topic=topic,
                error_signature=signature,
                sample_error=sample_error,
                sample_job_id=str(sample_id),
                count=count,
                first_seen=to_timestamp(first_seen),
                last_seen=to_timestamp(last_seen),
            )
            for (
                topic,
                signature,
                sample_error,
                sample_id,
                count,
                first_seen,
                last_seen,
            ) in cur.fetchall()
        ]
    )


def throughput(cur: Cursor, request: pb.ThroughputRequest) -> pb.ThroughputResponse:
    """Completed and dead-lettered jobs per minute, oldest minute first."""
    minutes = request.minutes or DEFAULT_MINUTES
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidArgument(f"minutes {minutes} is out of range 1..{MAX_MINUTES}")
    cur.execute(THROUGHPUT, {"minutes": minutes})
    return pb.ThroughputResponse(
        buckets=[
            pb.ThroughputBucket(
                minute=to_timestamp(minute),
                completed=completed,
                dead_lettered=dead_lettered,
            )
            for minute, completed, dead_lettered in cur.fetchall()
        ]
    )

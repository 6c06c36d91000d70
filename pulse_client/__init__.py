"""pulse_client: the Python SDK of the pulse job queue.

from pulse_client import Pulse, JobContext

pulse = Pulse("localhost:50051", concurrency=8)

@pulse.handler("emails.send")
def send(args: dict, ctx: JobContext) -> None: ...

pulse.enqueue("emails.send", {"to": "a@example.com"})
pulse.run()
"""

from pulse_client.client import Pulse, SubmitRefused
from pulse_client.context import JobContext, PermanentError, RetryLater
from pulse_client.errors import (
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    InvalidState,
    JobConflict,
    JobNotFound,
    PermissionDenied,
    PulseError,
    ResourceExhausted,
    ScheduleNotFound,
    Unauthenticated,
    Unavailable,
)
from pulse_client.ids import new_job_id
from pulse_client.models import (
    AuditEntry,
    AuditPage,
    DeadLetterGroup,
    DispatchPause,
    DispatchStatus,
    Identity,
    Job,
    JobPage,
    JobStatus,
    NewJob,
    RequeueProgress,
    Stats,
    ThroughputBucket,
    TopicStats,
)
from pulse_client.schedules import (
    After,
    At,
    Cron,
    Every,
    MissedRuns,
    Occurrence,
    Schedule,
)

__all__ = [
    "After",
    "At",
    "AuditEntry",
    "AuditPage",
    "ClientClosed",
    "Cron",
    "DeadLetterGroup",
    "DeadlineExceeded",
    "DispatchPause",
    "DispatchStatus",
    "Every",
    "Identity",
    "InvalidArgument",
    "InvalidState",
    "Job",
    "JobConflict",
    "JobContext",
    "JobNotFound",
    "JobPage",
    "JobStatus",
    "MissedRuns",
    "NewJob",
    "Occurrence",
    "PermanentError",
    "PermissionDenied",
    "Pulse",
    "PulseError",
    "RequeueProgress",
    "ResourceExhausted",
    "RetryLater",
    "Schedule",
    "ScheduleNotFound",
    "Stats",
    "SubmitRefused",
    "ThroughputBucket",
    "TopicStats",
    "Unauthenticated",
    "Unavailable",
    "new_job_id",
]

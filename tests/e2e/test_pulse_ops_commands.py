"""pulse-ops against a real pulsed: each command's output, its JSON form and
its exit status."""

from __future__ import annotations

import base64
import datetime
import json
import os
import pathlib
import pty
import re
import select
import subprocess
import time
import uuid
from collections.abc import Callable

import pytest

from pulse_client import Cron, Every, NewJob, Pulse
from tests.e2e.conftest import Deployment
from tests.e2e.pulse_ops_cli import PULSE_OPS, PulseOps

JOB_KEYS = {
    "id",
    "topic",
    "status",
    "priority",
    "attempt",
    "attempts_used",
    "max_attempts",
    "payload",
    "payload_base64",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "worker_id",
    "last_error",
    "timeout_seconds",
    "cancel_requested_at",
}


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    return start_deployment()


@pytest.fixture
def ops(deployment: Deployment, tmp_path: pathlib.Path) -> PulseOps:
    return PulseOps(tmp_path, deployment.addr)


@pytest.fixture
def topic() -> str:
    """A topic of this test alone: the module's tests share one database."""
    return f"ops.{uuid.uuid4().hex[:12]}"


def dead_letter(
    deployment: Deployment, job_ids: list[str], error: str = "boom"
) -> None:
    """Arrange jobs as a last failed attempt leaves them."""
    deployment.sql.execute(
        "UPDATE jobs SET status = 'dead_lettered', attempt = max_attempts,"
        " finished_at = now(), last_error = %s WHERE id = ANY(%s::uuid[])",
        (error, job_ids),
    )


def statuses(deployment: Deployment, topic: str) -> dict[str, int]:
    return dict(
        deployment.sql.all(
            "SELECT status, count(*) FROM jobs WHERE topic = %s GROUP BY 1", (topic,)
        )
    )


# -- submit ----------------------------------------------------------------------


def test_submit_prints_the_id_of_the_stored_job(
    ops: PulseOps, client: Pulse, topic: str
) -> None:
    result = ops(
        "submit",
        topic,
        '{"to": "a@x.org",\n "n": 1}',
        "--priority=7",
        "--max-attempts=3",
    )

    assert result.code == 0, result
    job = client.get_job(result.out.strip())
    assert job.topic == topic
    assert job.payload == b'{"to":"a@x.org","n":1}'
    assert (job.priority, job.max_attempts, job.status.value) == (7, 3, "pending")


def test_submit_reads_the_payload_from_stdin_or_a_file_and_defaults_to_null(
    ops: PulseOps, client: Pulse, topic: str
) -> None:
    (ops.home / "p.json").write_text('\ufeff["from", "file"]\n')

    from_stdin = ops("submit", topic, "-", stdin='{"from": "stdin"}')
    from_file = ops("submit", topic, "@p.json")
    without = ops("submit", topic, "--json")

    assert client.get_job(from_stdin.out.strip()).json() == {"from": "stdin"}
    assert client.get_job(from_file.out.strip()).json() == ["from", "file"]
    assert client.get_job(without.json()["id"]).payload == b"null"


def test_submit_delays_by_a_duration_or_until_a_time(
    ops: PulseOps, client: Pulse, topic: str
) -> None:
    before = datetime.datetime.now(datetime.UTC)

    delayed = ops("submit", topic, "--delay=1h30m")
    at = ops("submit", topic, "--at=2030-01-01T12:00:00+02:00")

    job = client.get_job(delayed.out.strip())
    assert job.status.value == "scheduled"
    assert job.run_at is not None
    wait = job.run_at - before
    assert datetime.timedelta(minutes=89) < wait < datetime.timedelta(minutes=91)
    assert client.get_job(at.out.strip()).run_at == datetime.datetime(
        2030, 1, 1, 10, tzinfo=datetime.UTC
    )


# -- jobs list and get -------------------------------------------------------------


def test_jobs_list_prints_aligned_columns_with_a_one_line_error(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    ids = client.enqueue_many([NewJob(topic, {"n": n}) for n in range(3)])
    error = "ValueError: " + "x" * 100 + "\nTraceback (most recent call last):"
    dead_letter(deployment, ids[:1], error)

    result = ops("jobs", "list", f"--topic={topic}")

    assert result.code == 0, result
    header, *rows = result.lines()
    assert header.split() == [
        "ID",
        "TOPIC",
        "STATUS",
        "PRIO",
        "ATTEMPTS",
        "SUBMITTED",
        "ERROR",
    ]
    assert len(rows) == 3
    starts = [header.index(name) for name in ("TOPIC", "STATUS", "ATTEMPTS")]
    for row in rows:
        assert [row[s - 2 : s] for s in starts] == ["  "] * 3
    (dead,) = [row for row in rows if row.startswith(ids[0])]
    assert " dead_lettered " in dead
    assert " 20/20 " in dead
    assert dead.endswith("…")
    assert "Traceback" not in result.out
    assert [r.split()[0] for r in rows if " pending " in r] == [ids[2], ids[1]]


def test_jobs_list_filters_by_status_error_text_and_age(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    ids = client.enqueue_many([NewJob(topic) for _ in range(4)])
    dead_letter(deployment, ids[:2], "SMTP 550 mailbox full")
    dead_letter(deployment, ids[2:3], "timeout")
    deployment.sql.execute(
        "UPDATE jobs SET created_at = now() - interval '3 hours' WHERE id = %s",
        (ids[1],),
    )

    def listed(*args: str) -> list[str]:
        result = ops("jobs", "list", f"--topic={topic}", "--json", *args)
        assert result.code == 0, result
        return sorted(job["id"] for job in result.json()["jobs"])

    assert listed("--status=dead_lettered") == sorted(ids[:3])
    assert listed("--status=pending,canceled") == [ids[3]]
    assert listed("--error-like=smtp 550") == sorted(ids[:2])
    assert listed("--error-like=SMTP", "--since=1h") == [ids[0]]
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    assert listed(f"--since={since.isoformat()}") == sorted([ids[0], *ids[2:]])


def test_jobs_list_json_has_stable_keys_and_says_when_more_match(
    ops: PulseOps, client: Pulse, topic: str
) -> None:
    client.enqueue_many([NewJob(topic) for _ in range(3)])

    as_json = ops("jobs", "list", f"--topic={topic}", "--limit=2", "--json")
    as_text = ops("jobs", "list", f"--topic={topic}", "--limit=2")
    nothing = ops("jobs", "list", "--topic=ops.nothing")

    data = as_json.json()
    assert set(data) == {"jobs", "next_page_token"}
    assert data["next_page_token"]
    assert [set(job) for job in data["jobs"]] == [JOB_KEYS, JOB_KEYS]
    assert as_json.err == ""
    assert len(as_text.lines()) == 3
    assert "more match" in as_text.err
    assert nothing.out.strip() == "no jobs match"


def test_jobs_get_prints_every_field_the_payload_and_the_full_error(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    job_id = client.enqueue(topic, {"to": "a@x.org", "tags": [1, 2]}, priority=3)
    dead_letter(deployment, [job_id], "first line\n  second line")

    result = ops("jobs", "get", job_id)

    assert result.code == 0, result
    text = result.out
    for label in (
        "id:",
        "topic:",
        "status:",
        "priority:",
        "attempts:",
        "attempt:",
        "timeout:",
        "submitted:",
        "run at:",
        "started:",
        "finished:",
        "lease expires:",
        "worker:",
        "cancel requested:",
        "payload:",
        "last error:",
    ):
        assert re.search(rf"^{re.escape(label)}", text, re.MULTILINE), label
    assert re.search(r"^status:\s+dead_lettered$", text, re.MULTILINE)
    assert re.search(r"^attempts:\s+20 of 20 used$", text, re.MULTILINE)
    assert '    "to": "a@x.org",' in text
    assert "  first line\n    second line" in text


def test_jobs_get_shows_a_binary_payload_as_base64(
    ops: PulseOps, client: Pulse, topic: str
) -> None:
    raw = b"\x00\xffbinary\x80"
    job_id = client.enqueue(topic, raw)

    text = ops("jobs", "get", job_id)
    data = ops("jobs", "get", job_id, "--json").json()

    assert f"payload: (not JSON: {len(raw)} bytes, shown as base64)" in text.out
    assert base64.b64encode(raw).decode() in text.out
    assert set(data) == JOB_KEYS
    assert data["payload"] is None
    assert base64.b64decode(data["payload_base64"]) == raw


def test_an_unknown_job_id_is_not_found(ops: PulseOps) -> None:
    missing = str(uuid.uuid4())

    result = ops("jobs", "get", missing)

    assert result.code == 1
    assert result.error == f"job '{missing}' not found"


# -- cancel and requeue by id ----------------------------------------------------------


def test_cancel_goes_on_past_an_unknown_id_and_exits_1(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    first, second = client.enqueue_many([NewJob(topic), NewJob(topic)])
    missing = str(uuid.uuid4())

    result = ops("jobs", "cancel", first, missing, second)

    assert result.code == 1
    assert result.lines() == [f"{first}  canceled", f"{second}  canceled"]
    assert result.error == f"job {missing} not found"
    assert statuses(deployment, topic) == {"canceled": 2}


def test_requeue_by_id_puts_dead_letters_back_and_json_lists_them(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    ids = client.enqueue_many([NewJob(topic), NewJob(topic)])
    dead_letter(deployment, ids)

    result = ops("jobs", "requeue", *ids, "--json")
    again = ops("jobs", "requeue", ids[0])

    assert result.code == 0, result
    data = result.json()
    assert [job["status"] for job in data["jobs"]] == ["pending", "pending"]
    assert [job["attempts_used"] for job in data["jobs"]] == [0, 0]
    assert data["errors"] == []
    assert again.code == 1
    assert "cannot requeue" in again.error
    assert statuses(deployment, topic) == {"pending": 2}


# -- bulk requeue --------------------------------------------------------------------


def test_bulk_requeue_with_yes_acts_on_every_match_beyond_one_page(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    ids = client.enqueue_many([NewJob(topic) for _ in range(2500)])
    dead_letter(deployment, ids, "Timeout after 30s")

    result = ops(
        "jobs",
        "requeue",
        "--status=dead_lettered",
        f"--topic={topic}",
        "--error-like=timeout",
        "--yes",
    )

    assert result.code == 0, result
    assert result.out.strip() == "requeued 2500 of 2500 matching jobs"
    assert result.err == ""  # no progress bar without a terminal
    assert statuses(deployment, topic) == {"pending": 2500}
    audit = ops("audit", "--action=jobs.requeue", "--limit=5", "--json").json()
    (entry,) = [e for e in audit["entries"] if e["target"] == topic]
    assert entry["detail"]["requeued"] == 2500


def test_bulk_requeue_without_a_terminal_or_yes_is_refused(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    ids = client.enqueue_many([NewJob(topic) for _ in range(3)])
    dead_letter(deployment, ids)

    result = ops("jobs", "requeue", "--status=dead_lettered", f"--topic={topic}")

    assert result.code == 2
    assert "3 dead_lettered jobs" in result.error
    assert "pass --yes" in result.error
    assert statuses(deployment, topic) == {"dead_lettered": 3}


def test_bulk_requeue_on_a_terminal_asks_and_shows_progress(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    ids = client.enqueue_many([NewJob(topic) for _ in range(600)])
    dead_letter(deployment, ids)
    args = ["jobs", "requeue", "--status=dead_lettered", f"--topic={topic}"]

    declined = run_on_terminal(ops, args, answer="n\n")
    assert declined.code == 1
    assert statuses(deployment, topic) == {"dead_lettered": 600}

    accepted = run_on_terminal(ops, args, answer="y\n")

    assert accepted.code == 0, accepted
    assert f"Requeue 600 dead_lettered jobs of topic '{topic}'? [y/N]" in (
        declined.terminal
    )
    assert "nothing requeued" in declined.terminal
    assert "600/600 requeued" in accepted.terminal
    assert "[" + "#" * 30 + "]" in accepted.terminal
    assert accepted.out.strip() == "requeued 600 of 600 matching jobs"
    assert statuses(deployment, topic) == {"pending": 600}


class TerminalRun:
    def __init__(self, code: int, out: str, terminal: str) -> None:
        self.code, self.out, self.terminal = code, out, terminal

    def __repr__(self) -> str:
        return f"TerminalRun({self.code}, {self.out!r}, {self.terminal!r})"


def run_on_terminal(ops: PulseOps, args: list[str], answer: str) -> TerminalRun:
    """Run with stdin and stderr on a pseudo-terminal, typing ``answer``;
    stdout stays a pipe."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(PULSE_OPS), *args],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=ops.environment(),
            cwd=ops.home,
        )
        os.close(terminal)
        terminal = -1
        os.write(controller, answer.encode())
        seen = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the other side closed
                    chunk = b""
                if not chunk and process.poll() is not None:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        out, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    return TerminalRun(process.returncode, out.decode(), seen.decode(errors="replace"))


# -- the deployment as a whole -----------------------------------------------------


def test_stats_prints_a_row_per_topic_a_total_and_the_oldest_waiting_job(
    ops: PulseOps, client: Pulse, deployment: Deployment, topic: str
) -> None:
    ids = client.enqueue_many([NewJob(topic) for _ in range(3)])
    dead_letter(deployment, ids[:1])

    text = ops("stats")
    data = ops("stats", "--json").json()

    assert text.code == 0, text
    header, *rows = text.lines()
    assert header.split() == [
        "TOPIC",
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "RETRYING",
        "COMPLETED",
        "DEAD",
        "CANCELED",
    ]
    (mine,) = [row.split() for row in rows if row.startswith(topic + " ")]
    assert mine == [topic, "0", "2", "0", "0", "0", "1", "0"]
    total = [row.split() for row in rows if row.startswith("TOTAL")]
    assert len(total) == 1
    assert int(total[0][2]) == sum(t["pending"] for t in data["topics"])
    assert re.search(
        r"^oldest waiting job: \S+ \(topic \S+\), waiting \d", text.out, re.MULTILINE
    )
    assert set(data) == {
        "topics",
        "total",
        "oldest_pending",
        "oldest_pending_age_seconds",
    }
    assert data["oldest_pending"]["status"] == "pending"


def test_dispatch_pause_status_and_resume(ops: PulseOps, topic: str) -> None:
    try:
        paused = ops("dispatch", "pause", "-m", "deploying v2")
        topic_paused = ops("dispatch", "pause", f"--topic={topic}")
        status = ops("dispatch", "status")
        data = ops("dispatch", "status", "--json").json()
    finally:
        resumed = ops("dispatch", "resume")
        topic_resumed = ops("dispatch", "resume", f"--topic={topic}")

    assert paused.code == 0, paused
    assert topic_paused.code == 0, topic_paused
    assert re.search(
        r"^dispatch: paused for every topic, by anonymous since "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+s ago\): deploying v2$",
        status.out,
        re.MULTILINE,
    ), status.out
    assert re.search(
        rf"^  {re.escape(topic)}  by anonymous since ", status.out, re.MULTILINE
    )
    assert data["paused"] is True
    assert data["all"]["reason"] == "deploying v2"
    assert [p["topic"] for p in data["topics"]] == [topic]
    assert resumed.code == 0, resumed
    assert topic_resumed.out.splitlines()[0] == "dispatch: running"
    assert "no topic is paused" in topic_resumed.out


def test_audit_lists_operator_actions_filtered_by_user_and_action(
    ops: PulseOps, client: Pulse, topic: str
) -> None:
    job_id = client.enqueue(topic)
    ops("jobs", "cancel", job_id)

    text = ops("audit", "--action=job.cancel", "--by=anonymous", "--limit=3")
    data = ops("audit", "--action=job.cancel", "--limit=1", "--json").json()
    nobody = ops("audit", "--by=nobody")

    assert text.lines()[0].split() == ["AT", "USER", "ACTION", "TARGET", "DETAIL"]
    assert any(job_id in line and "job.cancel" in line for line in text.lines())
    (entry,) = data["entries"]
    assert (entry["target"], entry["user"]) == (job_id, "anonymous")
    assert entry["detail"] == {"status": "canceled"}
    assert nobody.out.strip() == "no audit entries match"


def test_whoami_on_an_open_server(ops: PulseOps, deployment: Deployment) -> None:
    result = ops("whoami")

    assert result.code == 0, result
    assert re.search(r"^user:\s+anonymous$", result.out, re.MULTILINE)
    assert re.search(r"^server requires credentials:\s+no$", result.out, re.MULTILINE)


# -- schedules -------------------------------------------------------------------------


def test_schedules_list_get_next_history_pause_resume_and_delete(
    ops: PulseOps, client: Pulse, topic: str
) -> None:
    nightly = client.schedule(
        topic, {"k": 1}, Cron("0 3 * * *", "Europe/Paris"), name=f"{topic}-nightly"
    )
    ticking = client.schedule(topic, None, Every(0.2), name=f"{topic}-tick")
    deadline = time.monotonic() + 10
    while client.get_schedule(ticking.name).fired_count < 2:
        assert time.monotonic() < deadline, "the schedule never fired twice"
        time.sleep(0.1)

    listed = ops("schedules", "list", f"--topic={topic}")
    got = ops("schedules", "get", nightly.name)
    got_json = ops("schedules", "get", nightly.name, "--json").json()
    upcoming = ops("schedules", "next", nightly.name, "--count=3")
    history = ops("schedules", "history", ticking.name, "--limit=2", "--json")
    paused = ops("schedules", "pause", ticking.name)
    resumed = ops("schedules", "resume", ticking.name)
    deleted = ops("schedules", "delete", ticking.name)
    gone = ops("schedules", "get", ticking.name)

    assert listed.code == 0, listed
    assert listed.lines()[0].split()[:4] == ["NAME", "TOPIC", "RULE", "STATE"]
    assert any("cron '0 3 * * *' Europe/Paris" in line for line in listed.lines())
    assert any("every 200ms" in line for line in listed.lines())
    assert re.search(
        r"^rule:\s+cron '0 3 \* \* \*' Europe/Paris$", got.out, re.MULTILINE
    )
    assert '    "k": 1' in got.out
    assert got_json["rule"] == {
        "kind": "cron",
        "expression": "0 3 * * *",
        "tz": "Europe/Paris",
    }
    assert got_json["payload"] == {"k": 1}
    times = upcoming.lines()
    assert len(times) == 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d 0[12]:00:00Z", t) for t in times)
    occurrences = history.json()["occurrences"]
    assert len(occurrences) == 2
    assert all(o["job_id"] for o in occurrences)
    assert paused.out.strip() == f"schedule '{ticking.name}' paused"
    assert resumed.out.startswith(f"schedule '{ticking.name}' resumed")
    assert deleted.code == 0, deleted
    assert gone.code == 1
    assert "not found" in gone.error


@pytest.mark.parametrize("count", ["0", "1001"])
def test_schedules_next_refuses_a_count_out_of_range(ops: PulseOps, count: str) -> None:
    result = ops("schedules", "next", "any", f"--count={count}")

    assert result.code == 2
    assert "--count" in result.error


def test_json_output_parses_for_every_listing(ops: PulseOps) -> None:
    for args in (
        ["jobs", "list"],
        ["stats"],
        ["dispatch", "status"],
        ["audit"],
        ["whoami"],
        ["schedules", "list"],
        ["config", "view"],
    ):
        result = ops(*args, "--json")
        assert result.code == 0, result
        assert isinstance(json.loads(result.out), dict), args

"""The faults, one method each, injected into a running ``Campaign``.

Every method returns a ``Fault``: what was hit, when (wall clock, which is
also the database's clock on this machine) and when the injector let go.
Worker faults pick the worker process that holds the most running jobs, so
the fault lands mid-job.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import time

from tests.e2e.conftest import wait_for
from tests.faults.harness import LEASE_SECONDS, Campaign, WorkerSlot, worker_pid

KINDS = (
    "worker-kill",
    "worker-freeze",
    "connection-cut",
    "replica-kill",
    "replica-freeze",
    "postgres-fast",
    "postgres-immediate",
    "submit-answer-lost",
)
# Long enough for every lease the target holds to lapse and be re-run.
PAST_THE_LEASE_SECONDS = LEASE_SECONDS + 1.0
REPLICA_DOWN_SECONDS = 1.0
POSTGRES_DOWN_SECONDS = 1.0
# Past the lease and past the load's call timeout.
REPLICA_FROZEN_SECONDS = 4.0
ANSWERS_LOST_SECONDS = 1.0
# How long to look for a worker that holds several jobs at once.
_BUSY_WORKER_WAIT_SECONDS = 3.0
_BUSY_JOBS = 2
_RECONNECT_WAIT_SECONDS = 30.0
# The load submits every few tens of milliseconds.
_LOAD_SAMPLE_SECONDS = 0.3


@dataclasses.dataclass
class Fault:
    """One injected fault."""

    kind: str
    target: str
    started: float
    healed: float
    # For worker faults: the worker id hit (jobs it held are in the checks).
    worker_id: str = ""
    detail: str = ""


class FaultInjector:
    """Injects faults into ``campaign``; ``rng`` picks targets and, for
    ``inject(kind, vary=True)``, durations."""

    def __init__(self, campaign: Campaign, rng: random.Random) -> None:
        self.campaign = campaign
        self.rng = rng
        self.faults: list[Fault] = []

    def inject(self, kind: str, *, vary: bool = False) -> Fault:
        """Inject one fault of ``kind`` (one of ``KINDS``). With ``vary``,
        durations are drawn at random, some shorter than the lease."""
        rng = self.rng
        if kind == "worker-kill":
            fault = self.kill_worker()
        elif kind == "worker-freeze":
            seconds = rng.uniform(0.2, 3.0) if vary else PAST_THE_LEASE_SECONDS
            fault = self.freeze_worker(seconds)
        elif kind == "connection-cut":
            seconds = PAST_THE_LEASE_SECONDS
            if vary:
                # A third of the cuts heal at once (the worker reconnects and
                # its leases hold); the rest keep it off for a while.
                seconds = rng.choice(
                    [0.0, rng.uniform(0.2, 3.0), rng.uniform(0.2, 3.0)]
                )
            fault = self.cut_connection(seconds)
        elif kind == "replica-kill":
            seconds = rng.uniform(0.0, 2.5) if vary else REPLICA_DOWN_SECONDS
            fault = self.kill_replica(seconds)
        elif kind == "replica-freeze":
            seconds = rng.uniform(0.5, 5.0) if vary else REPLICA_FROZEN_SECONDS
            fault = self.freeze_replica(seconds)
        elif kind in ("postgres-fast", "postgres-immediate"):
            seconds = rng.uniform(0.0, 2.5) if vary else POSTGRES_DOWN_SECONDS
            fault = self.restart_postgres(kind.split("-")[1], seconds)
        elif kind == "submit-answer-lost":
            seconds = rng.uniform(0.2, 2.0) if vary else ANSWERS_LOST_SECONDS
            fault = self.lose_submit_answers(seconds)
        else:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        self.faults.append(fault)
        return fault

    # -- workers -----------------------------------------------------------------

    def kill_worker(self) -> Fault:
        """SIGKILL a worker process mid-job; its supervisor starts another."""
        slot, worker_id = self._busiest_worker()
        pid = worker_pid(worker_id)
        streams = slot.connected_streams()
        started = time.time()
        assert slot.signal_child(pid, signal.SIGKILL), f"{slot.name} pid {pid} gone"
        wait_for(
            lambda: slot.child_pid() != pid and slot.connected_streams() > streams,
            f"{slot.name} to replace its killed worker process",
            _RECONNECT_WAIT_SECONDS,
        )
        return Fault(
            "worker-kill",
            f"{slot.name} pid {pid}",
            started,
            time.time(),
            worker_id,
            f"replaced by pid {slot.child_pid()}",
        )

    def freeze_worker(self, seconds: float) -> Fault:
        """SIGSTOP a worker process for ``seconds``, then SIGCONT: past the
        lease, the jobs it held run elsewhere and its late reports are
        refused."""
        slot, worker_id = self._busiest_worker()
        pid = worker_pid(worker_id)
        started = time.time()
        assert slot.signal_child(pid, signal.SIGSTOP), f"{slot.name} pid {pid} gone"
        self.campaign.frozen[pid] = slot
        try:
            time.sleep(seconds)
        finally:
            slot.signal_child(pid, signal.SIGCONT)
            del self.campaign.frozen[pid]
        return Fault(
            "worker-freeze",
            f"{slot.name} pid {pid}",
            started,
            time.time(),
            worker_id,
            f"frozen {seconds:.1f}s",
        )

    def cut_connection(self, refuse_seconds: float) -> Fault:
        """Reset a worker's connections to both replicas; for
        ``refuse_seconds`` it cannot connect again (a partition)."""
        slot, worker_id = self._busiest_worker()
        streams = slot.connected_streams()
        started = time.time()
        cut = sum(proxy.cut(refuse_seconds) for proxy in slot.proxies)
        wait_for(
            lambda: slot.connected_streams() > streams,
            f"{slot.name} to reconnect after the cut",
            refuse_seconds + _RECONNECT_WAIT_SECONDS,
        )
        return Fault(
            "connection-cut",
            f"{slot.name} pid {worker_pid(worker_id)}",
            started,
            time.time(),
            worker_id,
            f"{cut} connection(s) reset"
            + (f", refused for {refuse_seconds:.1f}s" if refuse_seconds else ""),
        )

    def _busiest_worker(self) -> tuple[WorkerSlot, str]:
        """The worker slot and worker id holding the most running jobs,
        waiting a little for one that holds several."""
        deadline = time.monotonic() + _BUSY_WORKER_WAIT_SECONDS
        while True:
            candidates = []
            for worker_id, held in self.campaign.running_by_worker().items():
                slot = self.campaign.slot_of(worker_id)
                if slot is not None and worker_pid(worker_id) == slot.child_pid():
                    candidates.append((len(held), slot.index, slot, worker_id))
            candidates.sort(key=lambda c: (c[0], c[1]))
            if candidates and (
                candidates[-1][0] >= _BUSY_JOBS or time.monotonic() >= deadline
            ):
                return candidates[-1][2], candidates[-1][3]
            if time.monotonic() >= deadline + _BUSY_WORKER_WAIT_SECONDS:
                raise AssertionError("no worker holds a running job to break")
            time.sleep(0.01)

    # -- replicas and Postgres ----------------------------------------------------

    def kill_replica(self, down_seconds: float) -> Fault:
        """SIGKILL a pulsed replica; after ``down_seconds`` start it again
        at the same address."""
        index = self.rng.randrange(len(self.campaign.replicas))
        replica = self.campaign.replicas[index]
        started = time.time()
        replica.kill()
        time.sleep(down_seconds)
        restarted = self.campaign.restart_replica(index)
        return Fault(
            "replica-kill",
            f"replica-{index} pid {replica.pid}",
            started,
            time.time(),
            detail=f"down {down_seconds:.1f}s, back as pid {restarted.pid}",
        )

    def lose_submit_answers(self, seconds: float) -> Fault:
        """For ``seconds``, the load's submits reach the replicas but their
        answers are lost; then its connections are reset. The jobs in flight
        were stored: the load's retries with the same ids must find them."""
        proxies = self.campaign.load_proxies
        started = time.time()
        before = len(self.campaign.load.failures)
        for proxy in proxies:
            proxy.swallow_answers(seconds)
        time.sleep(seconds)
        reset = sum(proxy.cut() for proxy in proxies)
        return Fault(
            "submit-answer-lost",
            "load",
            started,
            time.time(),
            detail=f"answers lost for {seconds:.1f}s, {reset} connection(s) reset, "
            f"{len(self.campaign.load.failures) - before} failed call(s) so far",
        )

    def freeze_replica(self, seconds: float) -> Fault:
        """SIGSTOP the replica the load submits to for ``seconds``, then
        SIGCONT: a hung server, which, unlike a dead one, refuses nothing
        and answers nothing."""
        index = self._replica_of_the_load()
        replica = self.campaign.replicas[index]
        started = time.time()
        replica.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            replica.process.send_signal(signal.SIGCONT)
        return Fault(
            "replica-freeze",
            f"replica-{index} pid {replica.pid}",
            started,
            time.time(),
            detail=f"frozen {seconds:.1f}s",
        )

    def _replica_of_the_load(self) -> int:
        """The index of the replica the load's client now sends to."""
        proxies = self.campaign.load_proxies
        before = [proxy.requests_bytes for proxy in proxies]
        time.sleep(_LOAD_SAMPLE_SECONDS)
        sent = [
            proxy.requests_bytes - bytes_before
            for proxy, bytes_before in zip(proxies, before, strict=True)
        ]
        return sent.index(max(sent))

    def restart_postgres(self, mode: str, down_seconds: float) -> Fault:
        """Stop the cluster (``fast`` or ``immediate``), keep it down for
        ``down_seconds``, start it again."""
        cluster = self.campaign.cluster
        started = time.time()
        cluster.stop(mode)
        stopped = time.time()
        time.sleep(down_seconds)
        cluster.start()
        healed = time.time()
        return Fault(
            f"postgres-{mode}",
            "postgres",
            started,
            healed,
            detail=f"stop took {stopped - started:.2f}s, down {healed - stopped:.2f}s",
        )

"""pulsed.batching.GroupCommit: one flush serves many callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from pulse_client.errors import Unavailable
from pulsed.batching import GroupCommit

WAIT_SECONDS = 5.0


class Recorder:
    """A batch function that records its batches and can be held up."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_with = fail_with

    def hold(self) -> None:
        """Make the next flush wait until ``release`` is set."""
        self.release.clear()
        self.entered.clear()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        assert self.release.wait(WAIT_SECONDS)
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 10 for item in items]


class Outcomes:
    """Callbacks that remember what each request received."""

    def __init__(self) -> None:
        self.received: dict[str, list[int] | BaseException] = {}
        self._cond = threading.Condition()

    def callback(self, name: str) -> Callable[[list[int] | BaseException], None]:
        def deliver(outcome: list[int] | BaseException) -> None:
            with self._cond:
                self.received[name] = outcome
                self._cond.notify_all()

        return deliver

    def wait_for(self, count: int) -> dict[str, list[int] | BaseException]:
        with self._cond:
            assert self._cond.wait_for(
                lambda: len(self.received) >= count, WAIT_SECONDS
            )
            return dict(self.received)


@pytest.fixture
def make_writer() -> Iterator[Callable[..., GroupCommit[int, int]]]:
    writers: list[GroupCommit[int, int]] = []

    def make(
        execute: Callable[[list[int]], list[int]], **options: float
    ) -> GroupCommit[int, int]:
        writer: GroupCommit[int, int] = GroupCommit(
            "test",
            execute,
            max_batch=int(options.get("max_batch", 1000)),
            max_wait_seconds=float(options.get("max_wait_seconds", 0.0)),
        )
        writer.start()
        writers.append(writer)
        return writer

    yield make

    for writer in writers:
        writer.stop()


def test_requests_queued_during_a_flush_share_the_next_one(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    recorder = Recorder()
    writer = make_writer(recorder)
    outcomes = Outcomes()
    recorder.hold()
    writer.submit([0], outcomes.callback("first"))
    assert recorder.entered.wait(WAIT_SECONDS)

    for n in range(1, 21):
        writer.submit([n, n + 100], outcomes.callback(f"r{n}"))
    recorder.release.set()

    received = outcomes.wait_for(21)
    assert recorder.batches[0] == [0]
    assert recorder.batches[1] == [x for n in range(1, 21) for x in (n, n + 100)]
    assert received["first"] == [0]
    assert received["r7"] == [70, 1070]
    assert writer.flushes == 2


def test_blocking_calls_from_many_threads_form_batches_and_each_gets_its_results(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    def slow_execute(items: list[int]) -> list[int]:
        batches.append(len(items))
        time.sleep(0.002)
        return [item * 10 for item in items]

    batches: list[int] = []
    writer = make_writer(slow_execute)
    results: dict[int, list[int]] = {}
    start = threading.Barrier(8)

    def caller(thread: int) -> None:
        start.wait()
        for call in range(25):
            value = thread * 1000 + call
            results[value] = writer.call([value])

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS * 4)

    assert len(results) == 200
    assert all(result == [value * 10] for value, result in results.items())
    assert sum(batches) == 200
    assert len(batches) < 200
    assert max(batches) > 1


def test_a_batch_never_exceeds_max_batch_and_a_request_is_never_split(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    recorder = Recorder()
    writer = make_writer(recorder, max_batch=5)
    outcomes = Outcomes()
    recorder.hold()
    writer.submit([0], outcomes.callback("first"))
    assert recorder.entered.wait(WAIT_SECONDS)

    writer.submit([1, 2, 3], outcomes.callback("a"))
    writer.submit([4, 5], outcomes.callback("b"))
    writer.submit([6, 7, 8], outcomes.callback("c"))
    writer.submit(list(range(10, 17)), outcomes.callback("big"))
    recorder.release.set()

    outcomes.wait_for(5)
    assert recorder.batches == [[0], [1, 2, 3, 4, 5], [6, 7, 8], list(range(10, 17))]


def test_max_wait_gathers_requests_that_arrive_within_it(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    recorder = Recorder()
    writer = make_writer(recorder, max_wait_seconds=0.3)
    outcomes = Outcomes()

    writer.submit([1], outcomes.callback("early"))
    time.sleep(0.05)
    writer.submit([2], outcomes.callback("late"))

    outcomes.wait_for(2)
    assert recorder.batches == [[1, 2]]


def test_max_wait_ends_early_once_a_batch_is_full(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    recorder = Recorder()
    writer = make_writer(recorder, max_wait_seconds=3.0, max_batch=2)
    outcomes = Outcomes()
    started = time.monotonic()

    writer.submit([1], outcomes.callback("one"))
    writer.submit([2], outcomes.callback("two"))

    outcomes.wait_for(2)
    assert time.monotonic() - started < 1.0


def test_a_failed_flush_reaches_every_caller_in_it_and_the_writer_carries_on(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    error = Unavailable("database down")
    recorder = Recorder(fail_with=error)
    writer = make_writer(recorder)
    outcomes = Outcomes()
    recorder.hold()
    writer.submit([0], outcomes.callback("first"))
    assert recorder.entered.wait(WAIT_SECONDS)
    writer.submit([1], outcomes.callback("a"))
    writer.submit([2, 3], outcomes.callback("b"))

    recorder.release.set()
    received = outcomes.wait_for(3)
    recorder.fail_with = None

    assert all(outcome is error for outcome in received.values())
    assert writer.call([4]) == [40]


def test_a_blocking_call_raises_the_batch_error(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    writer = make_writer(Recorder(fail_with=ValueError("bad batch")))

    with pytest.raises(ValueError, match="bad batch"):
        writer.call([1])


def test_a_callback_that_raises_does_not_stop_the_writer(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    writer = make_writer(Recorder())

    def explode(outcome: list[int] | BaseException) -> None:
        raise RuntimeError("callback bug")

    writer.submit([1], explode)

    assert writer.call([2]) == [20]


def test_an_empty_request_is_answered_at_once_without_a_flush(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    recorder = Recorder()
    writer = make_writer(recorder)

    assert writer.call([]) == []
    assert recorder.batches == []


def test_stop_flushes_everything_queued_before_it(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    recorder = Recorder()
    writer = make_writer(recorder, max_batch=2)
    outcomes = Outcomes()
    recorder.hold()
    writer.submit([0], outcomes.callback("first"))
    assert recorder.entered.wait(WAIT_SECONDS)
    for n in range(1, 6):
        writer.submit([n], outcomes.callback(f"r{n}"))

    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    time.sleep(0.1)
    recorder.release.set()
    stopper.join(WAIT_SECONDS)

    received = outcomes.wait_for(6)
    assert not stopper.is_alive()
    assert {name: received[name] for name in ("r1", "r5")} == {"r1": [10], "r5": [50]}
    assert sorted(x for batch in recorder.batches for x in batch) == [0, 1, 2, 3, 4, 5]


def test_a_request_after_stop_is_refused_as_unavailable(
    make_writer: Callable[..., GroupCommit[int, int]],
) -> None:
    writer = make_writer(Recorder())
    writer.stop()
    outcomes = Outcomes()

    writer.submit([1], outcomes.callback("late"))

    assert isinstance(outcomes.wait_for(1)["late"], Unavailable)
    with pytest.raises(Unavailable):
        writer.call([2])


def test_a_flush_stops_short_of_the_size_limit_but_never_splits_a_request() -> None:
    recorder = Recorder()
    # Each item weighs its own value.
    writer: GroupCommit[int, int] = GroupCommit(
        "test", recorder, size=lambda item: item, max_size=10
    )
    writer.start()
    try:
        outcomes = Outcomes()
        recorder.hold()
        writer.submit([1], outcomes.callback("first"))
        assert recorder.entered.wait(WAIT_SECONDS)
        writer.submit([3, 3], outcomes.callback("a"))  # 6
        writer.submit([4], outcomes.callback("b"))  # 10 with a
        writer.submit([5], outcomes.callback("c"))  # would be 15
        writer.submit([7, 7], outcomes.callback("d"))  # 14 alone: still goes
        recorder.release.set()

        received = outcomes.wait_for(5)
    finally:
        writer.stop()
    assert recorder.batches == [[1], [3, 3, 4], [5], [7, 7]]
    assert received["d"] == [70, 70]

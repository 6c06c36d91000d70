"""Fixtures of the fault campaign: a crashable cluster and the campaign on it.

``PULSE_FAULT_SEED`` fixes the random choices (targets, handler durations,
the mixed run's faults); ``PULSE_SOAK_SECONDS`` makes the mixed run last
that long. Both are read once, when pytest starts: the suite's guard
strips ``PULSE_*`` from the environment of every test.
"""

from __future__ import annotations

import itertools
import os
import pathlib
from collections.abc import Callable, Iterator

import pytest

from tests.faults.harness import CLUSTER_SETTINGS, Campaign
from tests.fixtures.reports import register_log
from tests.fixtures.servers import PulsedProcess
from tests.pgcluster import PgCluster

DEFAULT_SEED = 20240808


def fault_seed() -> int:
    raw = os.environ.get("PULSE_FAULT_SEED", "").strip()
    if not raw:
        return DEFAULT_SEED
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(
            f"PULSE_FAULT_SEED={raw!r} is not a whole number"
        ) from None


@pytest.fixture(scope="module")
def fault_cluster() -> Iterator[PgCluster]:
    """A throwaway cluster that keeps every acknowledged commit through an
    immediate shutdown, shared by the module's tests (each has a database
    of its own); destroyed after the module."""
    cluster = PgCluster(settings=CLUSTER_SETTINGS)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def campaign(
    request: pytest.FixtureRequest,
    fault_cluster: PgCluster,
    start_pulsed: Callable[..., PulsedProcess],
    create_database: Callable[..., str],
    tmp_path: pathlib.Path,
) -> Iterator[Campaign]:
    """A started campaign: replicas, workers and the load running. The load,
    the workers and the replicas stop after the test, then its database is
    dropped."""
    register_log(
        request.node,
        f"throwaway postgres on port {fault_cluster.port}",
        fault_cluster.log,
    )
    if not fault_cluster.running:
        fault_cluster.start()  # an earlier test failed while it was down
    database = f"pulse_{next(_databases)}"
    campaign = Campaign(
        cluster=fault_cluster,
        database=database,
        start_pulsed=start_pulsed,
        runs_url=create_database(migrated=False),
        log_dir=tmp_path,
        item=request.node,
        seed=request.config.stash.get(_SEED_KEY, DEFAULT_SEED),
    )
    try:
        campaign.start()
        yield campaign
    finally:
        problems = campaign.close()
        if fault_cluster.running:
            fault_cluster.drop_database(database)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


_databases = itertools.count(1)
_SEED_KEY = pytest.StashKey[int]()
_SOAK_KEY = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    # Read once, before any test strips the environment.
    config.stash[_SEED_KEY] = fault_seed()
    raw = os.environ.get("PULSE_SOAK_SECONDS", "").strip()
    try:
        config.stash[_SOAK_KEY] = float(raw) if raw else 0.0
    except ValueError:
        raise pytest.UsageError(
            f"PULSE_SOAK_SECONDS={raw!r} is not a number of seconds"
        ) from None


def soak_seconds(config: pytest.Config) -> float:
    """PULSE_SOAK_SECONDS, or 0 when unset."""
    return config.stash.get(_SOAK_KEY, 0.0)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    # A soak outlasts the suite's per-test timeout: give it room.
    soak = soak_seconds(config)
    if not soak:
        return
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(180 + 1.5 * soak))

"""Fixtures shared by test modules: a throwaway PostgreSQL cluster for each test worker."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from .pgcluster import cluster, why_not

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """A running cluster's URL for this test worker (skips, saying why, where there is none)."""
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    with cluster() as url:
        yield url


@pytest.fixture
def pg_url(pg_cluster: str) -> Iterator[str]:
    """A new, empty database on the worker's cluster, dropped after the test."""
    name = f"t{next(_databases)}"
    with psycopg.connect(pg_cluster, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield pg_cluster.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_cluster, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

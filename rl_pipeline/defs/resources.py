"""Dagster resources: the rate-limited API client and the DuckDB warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from rl_pipeline.client import ApiClient
from rl_pipeline.events import EventSink, ignore
from rl_pipeline.ingest import DEFAULT_BATCH_ROWS
from rl_pipeline.locations import DEFAULT_STATE_STORE, DEFAULT_WAREHOUSE
from rl_pipeline.retry import Jitter, RetryPolicy
from rl_pipeline.sources import load_sources
from rl_pipeline.state import StateStore, open_store, redact_url
from rl_pipeline.warehouse import DEFAULT_MEMORY_LIMIT, DEFAULT_THREADS, Warehouse


class RateLimitedApi(dg.ConfigurableResource):
    """One API of the sources file, behind a rate budget shared through `state_store`."""

    api: str = Field(description="The API's name in the sources file.")
    token: str | None = Field(
        default=None, repr=False, description="Bearer token; set it with dagster.EnvVar, never inline."
    )
    state_store: str = Field(
        default=DEFAULT_STATE_STORE,
        description="Where limiter state and checkpoints live: memory://, sqlite:///PATH or redis://HOST:PORT/DB.",
    )
    sources_file: str | None = Field(
        default=None, description="Sources YAML; default $RL_SOURCES_FILE or the shipped one."
    )
    max_attempts: int = Field(default=8, ge=1, description="Tries per request, the first included.")
    base_delay: float = Field(default=0.5, gt=0, description="Backoff base in seconds.")
    max_delay: float = Field(default=60.0, gt=0, description="Longest single backoff in seconds.")
    jitter: Jitter = Field(default=Jitter.FULL, description="Backoff jitter: full, equal, decorrelated or none.")
    request_deadline: float = Field(default=600.0, gt=0, description="Seconds one request may take, retries included.")
    workers: int = Field(
        default=4,
        ge=1,
        description="Days fetched at once within a run. They share the one rate budget: more workers hide "
        "latency and write time, they never raise the rate.",
    )
    max_workers: int = Field(
        default=16,
        ge=1,
        description="The most days fetched at once within a run (at least `workers`): while the last days to "
        "finish waited on the rate budget less than a tenth of their time (a server that answers slowly, or slow "
        "writes, left the rate unused), each finished day starts one more at once, up to this.",
    )
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The fields, with any password in `state_store` starred out (a Redis URL may carry one)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "state_store" else value

    def open_store(self) -> StateStore:
        return open_store(self.state_store)

    def client(self, store: StateStore | None = None, on_event: EventSink = ignore) -> ApiClient:
        """A client of this API; `on_event` hears what the user should see (retries, 429s, pace, circuit, quota)."""
        spec = load_sources(self.sources_file).apis[self.api]
        return ApiClient(
            self.api,
            spec,
            token=self.token,
            store=store or self.open_store(),
            retry=RetryPolicy(
                max_attempts=self.max_attempts,
                base_delay=self.base_delay,
                max_delay=self.max_delay,
                jitter=self.jitter,
                deadline=self.request_deadline,
            ),
            timeout=(self.connect_timeout, self.read_timeout),
            on_event=on_event,
        )


class DuckDBWarehouse(dg.ConfigurableResource):
    """The DuckDB file every endpoint table is upserted into."""

    path: str = Field(default=DEFAULT_WAREHOUSE, description="The DuckDB database file.")
    lock_patience: float = Field(default=120.0, gt=0, description="Seconds a writer waits for another to finish.")
    batch_rows: int = Field(
        default=DEFAULT_BATCH_ROWS,
        ge=1,
        description="Rows buffered before a write; a checkpoint follows each write. Bounds memory per day.",
    )
    memory_limit: str = Field(
        default=DEFAULT_MEMORY_LIMIT, description="DuckDB memory_limit of a writer's connection (it spills beyond)."
    )
    threads: int = Field(default=DEFAULT_THREADS, ge=1, description="DuckDB threads of a writer's connection.")

    def warehouse(self) -> Warehouse:
        return Warehouse(
            self.path, lock_patience=self.lock_patience, memory_limit=self.memory_limit, threads=self.threads
        )

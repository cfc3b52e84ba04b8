"""Declarative source specs: describe an API once, in YAML; no code needed.

The shipped `sources.yaml` describes the demo API. Another file is picked with
the environment variable RL_SOURCES_FILE. Every field is validated on load and
an error names the file and the field.
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from rl_pipeline.breaker import BreakerPolicy
from rl_pipeline.errors import SourceFileError
from rl_pipeline.file_errors import explain
from rl_pipeline.limits.algorithms import Algorithm, Limit
from rl_pipeline.pace import PacePolicy
from rl_pipeline.quota import QuotaPolicy

SOURCES_FILE_ENV = "RL_SOURCES_FILE"
SHIPPED_SOURCES = files("rl_pipeline").joinpath("sources.yaml")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {str(value).lower()}")
    return value


Number = Annotated[float, BeforeValidator(_no_bool)]  # YAML's `true` is not 1 request a second
# Days a run covers at most: a quarter, so that a year's backfill from the UI is 4 runs, as many as the shipped
# run queue runs at once, and no run starts while the others fetch (docs/benchmarks.md).
MAX_PARTITIONS_PER_RUN = 92
MAX_LOG_ENTRIES = 1000  # a sliding log's size, past which every decision gets slow (docs/benchmarks.md)
RESERVED_TABLES = {"batch", "_rl_partitions"}  # the writer's view of a batch; where its bookkeeping table was


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a valid name (letters, digits, underscores; not starting with a digit)")
    return value


class RateLimitSpec(_Spec):
    """A published limit: `rate` requests per `period` seconds, `burst` at once.

    The client keeps back enough of a bucket's burst to absorb
    `jitter_tolerance` seconds of send-time jitter: a request granted here
    reaches the server a little late (the network; a busy machine running
    several workers), and without that slack the jitter would turn into 429s
    at full speed. At 20 req/s, 0.25 s is 5 tokens (2 fixed tokens, 100 ms,
    let a 429 through with 3 processes of 4 workers on 2 cores). It costs no
    throughput, only burst. Sliding windows have no burst and keep none back.
    """

    name: str | None = None  # default: what it says, e.g. "20/1s"
    rate: Number = Field(gt=0, allow_inf_nan=False)
    period: Number = Field(default=1.0, gt=0, allow_inf_nan=False)
    burst: Number | None = Field(default=None, ge=1, allow_inf_nan=False)
    algorithm: Algorithm = Algorithm.TOKEN_BUCKET
    jitter_tolerance: Number = Field(default=0.25, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _grantable(self) -> RateLimitSpec:
        sliding = self.algorithm in (Algorithm.SLIDING_WINDOW_LOG, Algorithm.SLIDING_WINDOW_COUNTER)
        if sliding and self.rate < 1:
            raise ValueError(
                f"a sliding window of {self.rate:g} requests per {self.period:g}s never grants one; "
                "give whole requests per a longer period (e.g. rate: 1, period: 10)"
            )
        if self.algorithm is Algorithm.SLIDING_WINDOW_LOG and self.rate > MAX_LOG_ENTRIES:
            raise ValueError(
                f"a sliding_window_log keeps one entry per request: {self.rate:g} per window costs milliseconds "
                f"per decision (and holds Redis meanwhile); above {MAX_LOG_ENTRIES} use sliding_window_counter"
            )
        return self

    @property
    def key(self) -> str:
        """The limit's name in the state store: its own, or what it says."""
        return self.name or f"{self.rate:g}/{self.period:g}s"

    def to_limit(self) -> Limit:
        published = Limit(rate=self.rate, period=self.period, burst=self.burst, algorithm=self.algorithm)
        if self.algorithm in (Algorithm.SLIDING_WINDOW_LOG, Algorithm.SLIDING_WINDOW_COUNTER):
            return published
        return Limit(
            rate=self.rate,
            period=self.period,
            burst=max(1.0, published.capacity - self.jitter_tolerance * published.refill),
            algorithm=self.algorithm,
        )


def _distinct_limits(limits: list[RateLimitSpec]) -> list[RateLimitSpec]:
    seen: dict[str, RateLimitSpec] = {}
    for limit in limits:
        if seen.setdefault(limit.key, limit) != limit:
            raise ValueError(f"two different rate limits are named {limit.key!r}; give each its own `name`")
    return limits


RateLimits = Annotated[list[RateLimitSpec], AfterValidator(_distinct_limits)]


class AdaptiveSpec(_Spec):
    """For an API that publishes no limit: start at `initial_rate` (requests/s) and grow until the server refuses."""

    initial_rate: Number = Field(gt=0, allow_inf_nan=False)
    min_rate: Number = Field(default=0.1, gt=0, allow_inf_nan=False)
    max_rate: Number = Field(default=1000.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveSpec:
        if not self.min_rate <= self.initial_rate <= self.max_rate:
            raise ValueError("need min_rate <= initial_rate <= max_rate")
        return self


class PacingSpec(_Spec):
    """How requests are paced and what a 429 teaches (see `rl_pipeline/pace.py`)."""

    margin: float = Field(default=PacePolicy.margin, ge=0, lt=0.5, description="pace this share under a known rate")
    decrease: float = Field(default=PacePolicy.decrease, gt=0, lt=1, description="factor applied to the pace on a 429")
    recover: float = Field(
        default=PacePolicy.recover, gt=0, allow_inf_nan=False, description="seconds to climb back after one"
    )
    pause: float = Field(
        default=PacePolicy.pause,
        gt=0,
        allow_inf_nan=False,
        description="seconds everyone waits after a 429 with no Retry-After",
    )


class CircuitBreakerSpec(_Spec):
    """When an endpoint's circuit opens, and what a run does when it meets an open one."""

    consecutive_failures: PositiveInt = 5
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    min_requests: PositiveInt = 20
    window: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    cooldown: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    probe_timeout: float = Field(
        default=60.0, gt=0, allow_inf_nan=False, description="seconds a half-open probe may take before another goes"
    )
    on_open: Literal["wait", "fail"] = "wait"
    max_wait: float = Field(default=600.0, ge=0, allow_inf_nan=False, description="seconds a request waits, at most")

    def policy(self) -> BreakerPolicy:
        return BreakerPolicy(
            consecutive_failures=self.consecutive_failures,
            failure_rate=self.failure_rate,
            min_requests=self.min_requests,
            window=self.window,
            cooldown=self.cooldown,
            probe_timeout=self.probe_timeout,
        )


class QuotaSpec(_Spec):
    """Request quotas per API (and credential): every request sent counts, retries too."""

    daily: PositiveInt | None = None
    monthly: PositiveInt | None = None
    reset_hour: int = Field(default=0, ge=0, le=23, description="UTC hour at which the quota day starts")
    reserve: int = Field(default=0, ge=0, description="requests a day that backfills leave to the daily schedule")
    max_wait: float = Field(default=0.0, ge=0, description="seconds a run may wait for a reset before it fails")
    remaining_header: str | None = Field(default=None, description="where the API says how much of today is left")
    backfill_order: Literal["oldest_first", "newest_first"] = "oldest_first"

    def policy(self) -> QuotaPolicy:
        return QuotaPolicy(daily=self.daily, monthly=self.monthly, reset_hour=self.reset_hour)


class DaySpec(_Spec):
    """How one UTC day is asked for: a single date parameter, or a [start, end) pair.

    `format` is `iso` (ISO 8601 with Z), `epoch` (seconds), `epoch_ms`, or a
    strftime pattern such as `%Y-%m-%d`.
    """

    param: str | None = None
    start_param: str | None = None
    end_param: str | None = None
    format: str = "%Y-%m-%d"

    @model_validator(mode="after")
    def _one_style(self) -> DaySpec:
        if (self.param is None) == (self.start_param is None or self.end_param is None):
            raise ValueError("give either `param`, or both `start_param` and `end_param`")
        return self

    def _render(self, moment: datetime) -> str:
        if self.format == "iso":
            return moment.isoformat().replace("+00:00", "Z")
        if self.format == "epoch":
            return str(int(moment.timestamp()))
        if self.format == "epoch_ms":
            return str(int(moment.timestamp() * 1000))
        return moment.strftime(self.format)

    def params(self, day: date) -> dict[str, str]:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if self.param is not None:
            return {self.param: self._render(start)}
        assert self.start_param is not None and self.end_param is not None
        return {self.start_param: self._render(start), self.end_param: self._render(start + timedelta(days=1))}


class OffsetPagination(_Spec):
    style: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_size: PositiveInt = 100
    total_path: str | None = None


class PageNumberPagination(_Spec):
    style: Literal["page_number"]
    page_param: str = "page"
    size_param: str = "per_page"
    page_size: PositiveInt = 100
    first_page: int = 1
    total_pages_path: str | None = None


class CursorPagination(_Spec):
    """The next cursor comes from `cursor_path` in the body, or (Stripe style)
    from `cursor_record_field` of the page's last record; `has_more_path`,
    when given, says whether to go on."""

    style: Literal["cursor"]
    cursor_param: str = "cursor"
    cursor_path: str | None = "next_cursor"
    cursor_record_field: str | None = None
    has_more_path: str | None = None
    limit_param: str | None = "limit"
    page_size: PositiveInt = 100

    @model_validator(mode="after")
    def _cursor_from_somewhere(self) -> CursorPagination:
        if not self.cursor_path and not self.cursor_record_field:
            raise ValueError("give `cursor_path` (where the body holds the next cursor) or `cursor_record_field`")
        return self


class LinkPagination(_Spec):
    """`Link: <url>; rel="next"` headers, as GitHub sends them."""

    style: Literal["link"]
    size_param: str | None = "per_page"
    page_size: PositiveInt = 100


Pagination = Annotated[
    OffsetPagination | PageNumberPagination | CursorPagination | LinkPagination, Field(discriminator="style")
]


class EndpointSpec(_Spec):
    path: str
    day: DaySpec
    pagination: Pagination
    records_path: str = ""  # dotted path to the list of records; "" = the body is the list
    id_field: str = "id"
    table: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    rate_limits: RateLimits = Field(default_factory=list)
    lookback_days: int = Field(
        default=0, ge=0, le=MAX_PARTITIONS_PER_RUN - 1,
        description="days before the one that just ended that the daily run fetches again (records that arrive late)",
    )  # fmt: skip

    @field_validator("table", "id_field")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return value if value is None else _identifier(value)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with / (it is appended to base_url), got {value!r}")
        return value

    def table_name(self, endpoint_name: str) -> str:
        return self.table or endpoint_name


def _cron(value: str) -> str:
    if len(value.split()) != 5:
        raise ValueError(f"must be a cron expression of 5 fields (minute hour day month weekday), got {value!r}")
    return value


class ScheduleSpec(_Spec):
    """The daily run: when it goes (UTC), whether it is on from the start, and by when a day must be in."""

    cron: Annotated[str, AfterValidator(_cron)] = "15 0 * * *"
    running: bool = False  # off until turned on in the UI, as Dagster's schedules are
    fresh_by: Annotated[str, AfterValidator(_cron)] = Field(
        default="0 3 * * *", description="cron: once a tick passes, the day before it must be materialized"
    )


class ApiSpec(_Spec):
    base_url: str
    base_url_env: str | None = None
    token_env: str | None = None
    start_date: date
    rate_limits: RateLimits = Field(default_factory=list)
    adaptive: AdaptiveSpec | None = None
    pacing: PacingSpec = Field(default_factory=PacingSpec)
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    quota: QuotaSpec | None = None
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    endpoints: dict[str, EndpointSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _some_limit(self) -> ApiSpec:
        if not self.rate_limits and self.adaptive is None:
            raise ValueError("give the published `rate_limits`, or `adaptive` to learn an unpublished one")
        return self

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
            raise ValueError(f"must be http:// or https:// and a host, got {value!r}")
        return value.rstrip("/")

    def pace_policy(self) -> PacePolicy:
        """Pace at the published rate of the shortest period (longer ones are windows that allow bursts),
        or learn an unpublished one from `adaptive`."""
        ceiling, initial, floor = math.inf, math.inf, 0.0
        if self.rate_limits:
            shortest = min(rl.period for rl in self.rate_limits)
            ceiling = min(rl.rate / rl.period for rl in self.rate_limits if rl.period == shortest)
            initial, floor = ceiling, ceiling / 100
        if self.adaptive:
            ceiling = min(ceiling, self.adaptive.max_rate)
            initial, floor = min(ceiling, self.adaptive.initial_rate), self.adaptive.min_rate
        pacing = self.pacing
        return PacePolicy(
            ceiling=ceiling,
            initial=initial,
            floor=min(floor, initial),
            margin=pacing.margin,
            decrease=pacing.decrease,
            recover=pacing.recover,
            pause=pacing.pause,
        )

    def resolved_base_url(self) -> str:
        """`base_url`, unless the variable named by `base_url_env` is set."""
        if self.base_url_env and os.environ.get(self.base_url_env):
            return os.environ[self.base_url_env].rstrip("/")
        return self.base_url


class SourcesFile(_Spec):
    apis: dict[str, ApiSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> SourcesFile:
        tables: dict[str, str] = {}
        for api_name, api in self.apis.items():
            _identifier(api_name)
            for name, endpoint in api.endpoints.items():
                _identifier(name)
                table = endpoint.table_name(name)
                if table.lower() in RESERVED_TABLES:
                    raise ValueError(f"{api_name}.{name}: table name {table!r} is the pipeline's own; pick another")
                if table.lower() in tables:  # DuckDB's names ignore case: Events and events are one table
                    raise ValueError(
                        f"table {table!r} is written by both {tables[table.lower()]} and {api_name}.{name}"
                    )
                tables[table.lower()] = f"{api_name}.{name}"
        return self


def load_sources(path: str | os.PathLike[str] | None = None) -> SourcesFile:
    """Load and validate a sources file: `path`, else $RL_SOURCES_FILE, else the shipped one."""
    chosen = path or os.environ.get(SOURCES_FILE_ENV)
    source = Path(chosen) if chosen else SHIPPED_SOURCES
    try:
        text = source.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except FileNotFoundError:
        raise SourceFileError(f"sources file {source}: not found") from None
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"sources file {source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission
        raise SourceFileError(f"sources file {source}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SourceFileError(f"sources file {source}: not valid YAML: {exc}") from None
    try:
        return SourcesFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(explain(exc.errors(), text, SourcesFile))
        raise SourceFileError(f"sources file {source}: {problems}") from None

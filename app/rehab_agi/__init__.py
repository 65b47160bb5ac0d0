#!/usr/bin/python3
# Apache-2.0
"""rehab-agi: the reference service deployed by the rehab.scale roles.

Endpoints
  GET  /api/agi/health                  liveness: 200 while the process serves requests, with the
                                        version of the code this process loaded
  GET  /api/agi/health/ready            readiness: 200 when PostgreSQL and Redis answer, else 503
                                        with the failed dependencies named; sharded, 200 while at
                                        least one shard's PostgreSQL answers, naming the others
  POST /api/agi/beneficiaries           create {"name": str, "program": str?} -> 201 {"id": ...}
  GET  /api/agi/beneficiaries/<id>      read through the Redis cache (header X-Cache: hit|miss)
  GET  /api/agi/beneficiaries?after=&limit=
                                        list by ID, keyset paging ({"items", "next"}); sharded,
                                        through the coordinator database (every shard)
  GET  /api/agi/beneficiaries/count     {"count": n}; sharded, through the coordinator
  GET  /metrics                         Prometheus exposition

Configuration comes from the environment (see the app role's rehab-agi.env template). Writes use
REHAB_AGI_DB_WRITE_DSN (libpq multi-host, target_session_attrs=read-write) and reads use
REHAB_AGI_DB_READ_DSN (prefer-standby), so a PostgreSQL failover needs no configuration change.

Sharded (REHAB_AGI_SHARDS names the shard map, JSON rendered from the inventory's rehab_shards):
each shard has its own PostgreSQL (write and read DSN) and Redis. A beneficiary is read from the
shard its ID falls in (rehab_shard_map, the platform's one implementation of the map); a new one
is placed on the shard with the lowest fill ratio (rows over capacity) that can take it, and that
shard's identity sequence, bounded to its range, issues the ID. A shard whose database is down
makes only its own beneficiaries fail (503 naming it) and is skipped for new ones.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import psycopg2
import psycopg2.extras
import redis
import rehab_shard_map
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

# The release's version: the wheel's metadata is built from it (flit_core), and the running process
# reports it, so a rollout is checked from outside against the code actually loaded.
__version__ = "1.2.1"

LOG = logging.getLogger("rehab-agi")

BENEFICIARY_PATH = re.compile(r"^/api/agi/beneficiaries/(?P<id>[0-9]{1,18})$")
LIST_LIMIT = 1000  # most beneficiaries one listing page returns
# The coordinator's foreign server of a shard: rehab_shard_map's prefix plus the shard's name.
FOREIGN_SERVER = re.compile(re.escape(rehab_shard_map.COORDINATOR_SERVER_PREFIX) + r"([A-Za-z0-9_]+)")
MAX_BODY = 64 * 1024
# The schema as the release's first migration creates it (rehab.scale.pg_migrate runs it during a
# rollout); the service applies it too (CREATE ... IF NOT EXISTS), so it also starts on an empty database.
SCHEMA = (resources.files(__name__) / "migrations" / "0001_expand_beneficiaries.sql").read_text()
# Serialises the shard-bounds check of several app servers starting at once (pg_advisory_xact_lock).
SHARD_BOUNDS_LOCK = 0x7265686162  # "rehab"
BIGINT_MAX = 2**63 - 1


class Config:
    """Settings read once from the environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.bind = [a.strip() for a in env.get("REHAB_AGI_BIND", "127.0.0.1").split(",") if a.strip()]
        self.port = int(env.get("REHAB_AGI_PORT", "5001"))
        self.write_dsn = env.get("REHAB_AGI_DB_WRITE_DSN", "host=127.0.0.1 dbname=rehab user=rehab")
        self.read_dsn = env.get("REHAB_AGI_DB_READ_DSN", self.write_dsn)
        self.db_password = env.get("REHAB_AGI_DB_PASSWORD", "")
        self.redis_nodes = [n.strip() for n in env.get("REHAB_AGI_REDIS_NODES", "127.0.0.1:6379").split(",") if n]
        self.redis_cluster = env.get("REHAB_AGI_REDIS_CLUSTER", "false").lower() in ("1", "true", "yes")
        self.redis_user = env.get("REHAB_AGI_REDIS_USER") or None
        self.redis_password = env.get("REHAB_AGI_REDIS_PASSWORD") or None
        # TLS to Redis when set: the CA certificate the servers' certificates chain to.
        self.redis_tls_ca = env.get("REHAB_AGI_REDIS_TLS_CA") or None
        self.cache_ttl = int(env.get("REHAB_AGI_CACHE_TTL", "300"))
        self.check_timeout = float(env.get("REHAB_AGI_CHECK_TIMEOUT", "2"))
        # Sharded: the shard map file; empty for one database and one Redis (Phases 1 and 2).
        self.shards_file = env.get("REHAB_AGI_SHARDS") or None
        # Seconds a shard that failed is skipped (fast 503, no placement) before it is tried again.
        self.shard_retry = float(env.get("REHAB_AGI_SHARD_RETRY", "2"))
        # Sharded readiness answers within this many seconds, whatever a dead host makes a check
        # wait: a balancer's health check gives up sooner than a connection to a lost host does.
        self.ready_wait = float(env.get("REHAB_AGI_READY_WAIT", "0.5"))
        # Seconds between recounts of each shard's rows for placement.
        self.placement_refresh = float(env.get("REHAB_AGI_PLACEMENT_REFRESH", "5"))


class ShardUnavailableError(Exception):
    """A shard cannot serve now; the answer is 503 naming it."""

    def __init__(self, shard: str, reason: str) -> None:
        super().__init__(f"shard {shard} unavailable: {reason}")
        self.shard = shard


class OutsideRangeError(Exception):
    """A shard's database holds rows outside the shard's range: the shard is not used."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rehab_agi_http_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rehab_agi_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "rehab_agi_http_requests_in_progress",
            "Requests being served (the request queue)",
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "rehab_agi_cache_hits_total", "Beneficiary reads served by Redis", registry=self.registry
        )
        self.cache_misses = Counter(
            "rehab_agi_cache_misses_total", "Beneficiary reads that went to PostgreSQL", registry=self.registry
        )
        self.dependency_up = Gauge(
            "rehab_agi_dependency_up", "Last readiness result per dependency", ["dependency"], registry=self.registry
        )


class Database:
    """One connection per thread per DSN; a broken connection is dropped and retried once.

    ``bounds`` (min_id, max_id or None): a shard's range. Its identity sequence is bounded to it
    and a CHECK constraint refuses an ID outside it; rows already outside it are named and the
    shard is not used."""

    def __init__(self, config: Config, write_dsn: str | None = None, read_dsn: str | None = None, bounds=None) -> None:
        self.config = config
        self.write_dsn = write_dsn or config.write_dsn
        self.read_dsn = read_dsn or (config.read_dsn if write_dsn is None else self.write_dsn)
        self.bounds = bounds
        self.local = threading.local()
        self.schema_ready = False
        self.schema_lock = threading.Lock()

    def _connect(self, dsn: str, timeout: float | None = None):
        kwargs = {"password": self.config.db_password} if self.config.db_password else {}
        if timeout is not None:
            kwargs["connect_timeout"] = max(1, int(timeout))
        conn = psycopg2.connect(dsn, application_name="rehab-agi", **kwargs)
        conn.autocommit = True
        return conn

    def _conn(self, kind: str):
        conn = getattr(self.local, kind, None)
        if conn is None or conn.closed:
            dsn = self.write_dsn if kind == "write" else self.read_dsn
            conn = self._connect(dsn, self.config.check_timeout + 1)
            setattr(self.local, kind, conn)
        return conn

    def _drop(self, kind: str) -> None:
        conn = getattr(self.local, kind, None)
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
        setattr(self.local, kind, None)

    def run(self, kind: str, sql: str, params: tuple = ()) -> list[dict]:
        self.ensure_schema()
        for attempt in (1, 2):
            try:
                with self._conn(kind).cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.errors.ReadOnlySqlTransaction):
                # After a failover the old connection points at a dead or demoted node:
                # reconnect (libpq picks the node matching target_session_attrs) and retry once.
                self._drop(kind)
                if attempt == 2:
                    raise
        return []

    def ensure_schema(self) -> None:
        if self.schema_ready:
            return
        with self.schema_lock:
            if self.schema_ready:
                return
            conn = self._connect(self.write_dsn, self.config.check_timeout + 1)
            try:
                with conn.cursor() as cur:
                    cur.execute(SCHEMA)
                    if self.bounds is not None:
                        self._bound(cur, *self.bounds)
            finally:
                conn.close()
            self.schema_ready = True

    @staticmethod
    def _bound(cur, low: int, high: int | None) -> None:
        """Bound the identity sequence and the IDs to [low, high], once, under a lock."""
        top = BIGINT_MAX if high is None else high
        constraint = f"beneficiaries_id_in_shard_{low}_{high if high is not None else 'up'}"
        cur.execute("BEGIN")
        try:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SHARD_BOUNDS_LOCK,))
            cur.execute("SELECT id FROM beneficiaries WHERE id < %s OR id > %s ORDER BY id LIMIT 11", (low, top))
            outside = [row[0] for row in cur.fetchall()]
            if outside:
                more = ", ..." if len(outside) > 10 else ""
                ids = ", ".join(map(str, outside[:10]))
                raise OutsideRangeError(f"rows outside its range {low}-{high or ''}: IDs {ids}{more}")
            cur.execute(
                "SELECT seqstart, seqmin, seqmax FROM pg_sequence"
                " WHERE seqrelid = pg_get_serial_sequence('beneficiaries', 'id')::regclass"
            )
            if cur.fetchone() != (low, low, top):
                cur.execute("SELECT coalesce(max(id), 0) + 1 FROM beneficiaries")
                restart = max(low, cur.fetchone()[0])
                cur.execute(
                    "ALTER TABLE beneficiaries ALTER COLUMN id SET START WITH %s SET MINVALUE %s"
                    " SET MAXVALUE %s RESTART WITH %s",
                    (low, low, top, restart),
                )
            cur.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'beneficiaries'::regclass"
                " AND starts_with(conname, 'beneficiaries_id_in_shard_')"
            )
            names = [row[0] for row in cur.fetchall()]
            if names != [constraint]:
                for name in names:
                    cur.execute(f'ALTER TABLE beneficiaries DROP CONSTRAINT "{name}"')
                cur.execute(
                    f'ALTER TABLE beneficiaries ADD CONSTRAINT "{constraint}" CHECK (id BETWEEN %s AND %s)', (low, top)
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def check(self) -> str | None:
        """Return None when PostgreSQL answers a query (and a shard's bounds hold), else the reason."""
        try:
            conn = self._connect(self.write_dsn, self.config.check_timeout)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = %s", (int(self.config.check_timeout * 1000),))
                    cur.execute("SELECT 1")
            finally:
                conn.close()
            self.ensure_schema()
        except psycopg2.Error as exc:
            return _reason(exc)
        except OutsideRangeError as exc:
            return str(exc)
        return None


class Cache:
    """Read-through cache. The client is built on first use, so the service starts (and reports
    itself unready) while Redis or the cluster is not reachable yet, then recovers on its own."""

    ERRORS = (redis.RedisError, RedisClusterException)

    def __init__(self, config: Config, nodes: list[str] | None = None, cluster: bool | None = None) -> None:
        self.config = config
        self.nodes = nodes or config.redis_nodes
        self.cluster = config.redis_cluster if cluster is None else cluster
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self):
        config = self.config
        common = {
            "username": config.redis_user,
            "password": config.redis_password,
            "socket_timeout": config.check_timeout,
            "socket_connect_timeout": config.check_timeout,
            "decode_responses": True,
        }
        if config.redis_tls_ca:
            # The chain and the address each node is reached at, as PostgreSQL's verify-full.
            common.update(ssl=True, ssl_ca_certs=config.redis_tls_ca, ssl_cert_reqs="required", ssl_check_hostname=True)
        if self.cluster:
            nodes = [ClusterNode(*self._split(n)) for n in self.nodes]
            return RedisCluster(startup_nodes=nodes, **common)
        host, port = self._split(self.nodes[0])
        return redis.Redis(host=host, port=port, **common)

    @staticmethod
    def _split(node: str) -> tuple[str, int]:
        host, _, port = node.rpartition(":")
        return host or node, int(port or 6379)

    @staticmethod
    def key(beneficiary_id: int) -> str:
        return f"rehab:beneficiary:{beneficiary_id}"

    def get(self, beneficiary_id: int) -> dict | None:
        try:
            raw = self.client.get(self.key(beneficiary_id))
        except self.ERRORS as exc:
            LOG.warning("cache read failed: %s", exc)
            return None
        return json.loads(raw) if raw else None

    def put(self, beneficiary_id: int, row: dict) -> None:
        try:
            self.client.set(self.key(beneficiary_id), json.dumps(row, default=str), ex=self.config.cache_ttl)
        except self.ERRORS as exc:
            LOG.warning("cache write failed: %s", exc)

    def check(self) -> str | None:
        try:
            self.client.ping()
        except self.ERRORS as exc:
            return str(exc) or type(exc).__name__
        return None


class Shard:
    """One shard: its range, its PostgreSQL and its Redis, and what this server knows of it."""

    def __init__(self, config: Config, entry: dict) -> None:
        self.name = entry["name"]
        bounds = (entry["min_id"], entry["max_id"])
        redis_conf = entry.get("redis") or {}
        self.db = Database(config, entry["write_dsn"], entry.get("read_dsn"), bounds)
        self.cache = Cache(config, redis_conf.get("nodes"), redis_conf.get("cluster"))
        self.retry = config.shard_retry
        self.down_until, self.reason = 0.0, None
        self.exhausted = False
        self.rows, self.rows_at = 0, None

    def down(self) -> bool:
        return time.monotonic() < self.down_until

    def mark_down(self, reason: str) -> None:
        self.down_until, self.reason = time.monotonic() + self.retry, reason
        LOG.warning("shard %s unavailable: %s", self.name, reason)

    def mark_up(self) -> None:
        self.down_until, self.reason = 0.0, None

    def unavailable(self) -> ShardUnavailableError:
        return ShardUnavailableError(self.name, self.reason or "unknown")

    def run(self, kind: str, sql: str, params: tuple = ()) -> list[dict]:
        """Database.run, failing fast while the shard is known down and naming it when it fails."""
        if self.down():
            raise self.unavailable()
        try:
            return self.db.run(kind, sql, params)
        except (psycopg2.OperationalError, psycopg2.InterfaceError, OutsideRangeError) as exc:
            self.mark_down(_reason(exc))
            raise self.unavailable() from exc


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.shard_map, self.shards = None, {}
        self.coordinator = None
        if config.shards_file:
            self.shard_map, self.shards, coordinator_dsn = load_shards(config)
            if coordinator_dsn:
                self.coordinator = Database(config, coordinator_dsn, coordinator_dsn)
                self.coordinator.schema_ready = True  # it holds foreign tables only: nothing to create
            self.shard_up = Gauge(
                "rehab_agi_shard_up",
                "Last readiness result per shard and dependency",
                ["shard", "dependency"],
                registry=self.metrics.registry,
            )
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(self.shards))
            # One check per shard and dependency at a time; the last answer of each, kept.
            self.checks_lock = threading.Lock()
            self.inflight, self.last_checks = {}, {}
            self.placement_lock = threading.Lock()
        else:
            self.db = Database(config)
            self.cache = Cache(config)

    # --- readiness ------------------------------------------------------------------------------
    def readiness(self) -> tuple[int, dict]:
        if self.shards:
            return self._shard_readiness()
        checks = {"postgresql": self.db.check(), "redis": self.cache.check()}
        for name, error in checks.items():
            self.metrics.dependency_up.labels(dependency=name).set(0 if error else 1)
        failed = sorted(name for name, error in checks.items() if error)
        body = {
            "status": "unready" if failed else "ready",
            "failed": failed,
            "checks": {name: (error or "ok") for name, error in checks.items()},
        }
        return (HTTPStatus.SERVICE_UNAVAILABLE if failed else HTTPStatus.OK), body

    def _run_check(self, key, check):
        result = check()
        with self.checks_lock:
            self.last_checks[key] = result
        return result

    def _shard_checks(self) -> dict:
        """Every shard's PostgreSQL and Redis checked at once, answered within ready_wait seconds. A
        check still running then (a lost host: its connection waits out the timeout) counts with
        its previous answer, or as no answer; it is not started again until it ends, so a stream of
        health checks never queues behind a dead host."""
        with self.checks_lock:
            for shard in self.shards.values():
                for dependency, check in (("postgresql", shard.db.check), ("redis", shard.cache.check)):
                    key = (shard.name, dependency)
                    if key not in self.inflight or self.inflight[key].done():
                        self.inflight[key] = self.pool.submit(self._run_check, key, check)
            futures = dict(self.inflight)
        concurrent.futures.wait(futures.values(), timeout=self.config.ready_wait)
        waited = f"no answer within {self.config.ready_wait:g} s"
        with self.checks_lock:
            return {
                key: future.result() if future.done() else self.last_checks.get(key, waited)
                for key, future in futures.items()
            }

    def _shard_readiness(self) -> tuple[int, dict]:
        """Every shard's PostgreSQL and Redis (_shard_checks). A shard is available while its
        PostgreSQL answers; its Redis failing is named but reads then go to PostgreSQL. 503 only
        when no shard is available."""
        checks = self._shard_checks()
        unavailable = []
        for shard in self.shards.values():
            error = checks[(shard.name, "postgresql")]
            if error:
                shard.mark_down(error)
                unavailable.append(shard.name)
            else:
                shard.mark_up()
        for (name, dependency), error in checks.items():
            self.shard_up.labels(shard=name, dependency=dependency).set(0 if error else 1)
        failed = [f"{name}.{dependency}" for (name, dependency), error in checks.items() if error]
        serving = len(unavailable) < len(self.shards)
        body = {
            "status": ("degraded" if failed else "ready") if serving else "unready",
            "unavailable": unavailable,
            "failed": failed,
            "shards": {
                shard: {dep: (checks[(shard, dep)] or "ok") for dep in ("postgresql", "redis")} for shard in self.shards
            },
        }
        return (HTTPStatus.OK if serving else HTTPStatus.SERVICE_UNAVAILABLE), body

    # --- beneficiaries --------------------------------------------------------------------------
    def create_beneficiary(self, payload: object) -> tuple[int, dict]:
        problem = _beneficiary_problem(payload)
        if problem:
            return HTTPStatus.BAD_REQUEST, {"error": problem}
        sql = "INSERT INTO beneficiaries (name, program) VALUES (%s, %s) RETURNING id, name, program, created_at"
        params = (payload["name"].strip(), payload.get("program"))
        if not self.shards:
            return HTTPStatus.CREATED, _jsonable(self.db.run("write", sql, params)[0])
        for _ in self.shards:
            try:
                shard = self._place()
            except rehab_shard_map.ShardMapError as exc:
                return HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
            try:
                rows = shard.run("write", sql, params)
            except psycopg2.errors.SequenceGeneratorLimitExceeded:
                LOG.warning("shard %s has used up its range", shard.name)
                shard.exhausted = True
                continue
            except ShardUnavailableError:
                continue  # marked down: placed elsewhere on the next turn
            return HTTPStatus.CREATED, {**_jsonable(rows[0]), "shard": shard.name}
        return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no shard took the new beneficiary"}

    def _place(self) -> Shard:
        """The shard a new beneficiary goes to (rehab_shard_map.place), from row counts no older
        than placement_refresh seconds, plus the rows this server placed since."""
        now = time.monotonic()
        for shard in self.shards.values():
            stale = shard.rows_at is None or now - shard.rows_at > self.config.placement_refresh
            if stale and not shard.down():
                try:
                    shard.rows = shard.run("write", "SELECT count(*) AS n FROM beneficiaries")[0]["n"]
                    shard.rows_at = now
                except ShardUnavailableError:
                    pass
        with self.placement_lock:
            unavailable = [s.name for s in self.shards.values() if s.down() or s.rows_at is None]
            exhausted = [s.name for s in self.shards.values() if s.exhausted]
            rows = {s.name: s.rows for s in self.shards.values()}
            choice = rehab_shard_map.place(self.shard_map, rows, unavailable, exhausted)["shard"]
            self.shards[choice].rows += 1  # counted at once, so concurrent creates spread
        return self.shards[choice]

    def read_beneficiary(self, beneficiary_id: int) -> tuple[int, dict, str]:
        if self.shards:
            try:
                shard = self.shards[self.shard_map.shard_for(beneficiary_id)]
            except rehab_shard_map.ShardMapError as exc:
                return HTTPStatus.NOT_FOUND, {"error": f"beneficiary {beneficiary_id} not found: {exc}"}, "miss"
            if shard.down():
                raise shard.unavailable()
            cache, run = shard.cache, shard.run
        else:
            cache, run = self.cache, self.db.run
        cached = cache.get(beneficiary_id)
        if cached is not None:
            self.metrics.cache_hits.inc()
            return HTTPStatus.OK, cached, "hit"
        self.metrics.cache_misses.inc()
        rows = run("read", "SELECT id, name, program, created_at FROM beneficiaries WHERE id = %s", (beneficiary_id,))
        if not rows:
            return HTTPStatus.NOT_FOUND, {"error": f"beneficiary {beneficiary_id} not found"}, "miss"
        row = _jsonable(rows[0])
        cache.put(beneficiary_id, row)
        return HTTPStatus.OK, row, "miss"


def _cross_shard(app: App):
    """The database that answers for every beneficiary: the coordinator when sharded, else the one."""
    if not app.shards:
        return app.db
    if app.coordinator is None:
        raise ShardUnavailableError("coordinator", "no coordinator is configured for cross-shard reads")
    return app.coordinator


def _cross_shard_run(app: App, sql: str, params: tuple) -> list[dict]:
    try:
        return _cross_shard(app).run("read", sql, params)
    except psycopg2.Error as exc:
        if not app.shards:
            raise
        # A shard's foreign server failing names the shard; anything else is the coordinator's.
        found = FOREIGN_SERVER.search(str(exc))
        raise ShardUnavailableError(found.group(1) if found else "coordinator", _reason(exc)) from exc


def list_beneficiaries(app: App, query: dict[str, list[str]]) -> tuple[int, dict]:
    try:
        after = int((query.get("after") or ["0"])[0])
        limit = int((query.get("limit") or ["100"])[0])
    except ValueError:
        return HTTPStatus.BAD_REQUEST, {"error": "after and limit must be integers"}
    if after < 0 or not 1 <= limit <= LIST_LIMIT:
        return HTTPStatus.BAD_REQUEST, {"error": f"after must be >= 0 and limit between 1 and {LIST_LIMIT}"}
    sql = "SELECT id, name, program, created_at FROM beneficiaries WHERE id > %s ORDER BY id LIMIT %s"
    rows = _cross_shard_run(app, sql, (after, limit))
    items = [_jsonable(row) for row in rows]
    return HTTPStatus.OK, {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


def count_beneficiaries(app: App) -> tuple[int, dict]:
    return HTTPStatus.OK, {"count": _cross_shard_run(app, "SELECT count(*) AS n FROM beneficiaries", ())[0]["n"]}


def load_shards(config: Config) -> tuple[rehab_shard_map.ShardMap, dict[str, Shard], str | None]:
    """The shard map file: {"shards": [{name, min_id, max_id, capacity?, write_dsn, read_dsn?,
    redis: {nodes, cluster}}], "coordinator": {"dsn": ...}?}, validated by rehab_shard_map;
    SystemExit naming what is wrong."""
    try:
        with open(config.shards_file, encoding="utf-8") as handle:
            document = json.load(handle)
        entries = document["shards"]
        coordinator = (document.get("coordinator") or {}).get("dsn")
        shard_map = rehab_shard_map.load(entries)
        missing = [entry["name"] for entry in shard_map.shards if not entry.get("write_dsn")]
        if missing:
            raise rehab_shard_map.ShardMapError(f"no write_dsn for {', '.join(missing)}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"rehab-agi: shard map {config.shards_file}: {exc}") from exc
    return shard_map, {entry["name"]: Shard(config, entry) for entry in shard_map.shards}, coordinator


def _beneficiary_problem(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return "body must be a JSON object"
    name, program = payload.get("name"), payload.get("program")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        return "name must be a string of 1 to 200 characters"
    if program is not None and not isinstance(program, str):
        return "program must be a string"
    return None


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


SERVED_BY = socket.gethostname()


ROUTES = (
    "/api/agi/health",
    "/api/agi/health/ready",
    "/api/agi/beneficiaries",
    "/api/agi/beneficiaries/count",
    "/metrics",
)


def route_of(path: str) -> str:
    if BENEFICIARY_PATH.match(path):
        return "/api/agi/beneficiaries/{id}"
    if path in ROUTES:
        return path
    return "other"


def make_handler(app: App):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"rehab-agi/{__version__}"

        def log_message(self, format: str, *args) -> None:
            LOG.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            # Which app server answered: lets a client behind a balancer see the spread.
            self.send_header("X-Served-By", SERVED_BY)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self._status = status

        def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", headers)

        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            route = route_of(path)
            self._status = 500
            app.metrics.in_progress.inc()
            started = time.perf_counter()
            try:
                self._dispatch(method, path)
            except ShardUnavailableError as exc:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc), "shard": exc.shard})
            except psycopg2.Error as exc:
                LOG.error("database error on %s %s: %s", method, path, exc)
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "database unavailable"})
            except Exception:
                LOG.exception("unhandled error on %s %s", method, path)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            finally:
                app.metrics.in_progress.dec()
                app.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
                app.metrics.requests.labels(method=method, route=route, status=str(self._status)).inc()

        def _dispatch(self, method: str, path: str) -> None:
            if method in ("GET", "HEAD"):
                if path == "/api/agi/beneficiaries":
                    query = urllib.parse.parse_qs(self.path.partition("?")[2])
                    self._json(*list_beneficiaries(app, query))
                elif path == "/api/agi/beneficiaries/count":
                    self._json(*count_beneficiaries(app))
                elif path == "/api/agi/health":
                    self._json(HTTPStatus.OK, {"status": "ok", "version": __version__})
                elif path == "/api/agi/health/ready":
                    self._json(*app.readiness())
                elif path == "/metrics":
                    self._send(HTTPStatus.OK, generate_latest(app.metrics.registry), CONTENT_TYPE_LATEST)
                elif match := BENEFICIARY_PATH.match(path):
                    status, body, cache = app.read_beneficiary(int(match.group("id")))
                    self._json(status, body, {"X-Cache": cache})
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no route for {path}"})
            elif method == "POST" and path == "/api/agi/beneficiaries":
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                    return
                try:
                    payload = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    self._json(HTTPStatus.BAD_REQUEST, {"error": "body is not valid JSON"})
                    return
                self._json(*app.create_beneficiary(payload))
            else:
                self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} not allowed on {path}"})

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rehab-agi", description="The rehab-agi reference service.")
    parser.add_argument("--version", action="version", version=f"rehab-agi {__version__}")
    parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("REHAB_AGI_LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s"
    )
    config = Config(dict(os.environ))
    app = App(config)
    handler = make_handler(app)
    servers = []
    for address in config.bind:
        server = ThreadingHTTPServer((address, config.port), handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, name=f"http-{address}", daemon=True).start()
        LOG.info("listening on %s:%d", address, config.port)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.shutdown()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

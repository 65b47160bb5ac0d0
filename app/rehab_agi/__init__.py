#!/usr/bin/python3
# Apache-2.0
"""rehab-agi: the reference service deployed by the rehab.scale roles.

Endpoints
  GET  /api/agi/health                  liveness: 200 while the process serves requests, with the
                                        version of the code this process loaded
  GET  /api/agi/health/ready            readiness: 200 when PostgreSQL and Redis answer, else 503
                                        with the failed dependencies named
  POST /api/agi/beneficiaries           create {"name": str, "program": str?} -> 201 {"id": ...}
  GET  /api/agi/beneficiaries/<id>      read through the Redis cache (header X-Cache: hit|miss)
  GET  /metrics                         Prometheus exposition

Configuration comes from the environment (see the app role's rehab-agi.env template). Writes use
REHAB_AGI_DB_WRITE_DSN (libpq multi-host, target_session_attrs=read-write) and reads use
REHAB_AGI_DB_READ_DSN (prefer-standby), so a PostgreSQL failover needs no configuration change.
"""

from __future__ import annotations

import argparse
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
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import psycopg2
import psycopg2.extras
import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

# The release's version: the wheel's metadata is built from it (flit_core), and the running process
# reports it, so a rollout is checked from outside against the code actually loaded.
__version__ = "1.1.0"

LOG = logging.getLogger("rehab-agi")

BENEFICIARY_PATH = re.compile(r"^/api/agi/beneficiaries/(?P<id>[0-9]{1,18})$")
MAX_BODY = 64 * 1024
# The schema as the release's first migration creates it (rehab.scale.pg_migrate runs it during a
# rollout); the service applies it too (CREATE ... IF NOT EXISTS), so it also starts on an empty database.
SCHEMA = (resources.files(__name__) / "migrations" / "0001_expand_beneficiaries.sql").read_text()


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
    """One connection per thread per DSN; a broken connection is dropped and retried once."""

    def __init__(self, config: Config) -> None:
        self.config = config
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
            dsn = self.config.write_dsn if kind == "write" else self.config.read_dsn
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
            conn = self._connect(self.config.write_dsn, self.config.check_timeout + 1)
            try:
                with conn.cursor() as cur:
                    cur.execute(SCHEMA)
            finally:
                conn.close()
            self.schema_ready = True

    def check(self) -> str | None:
        """Return None when PostgreSQL answers a query, else the reason."""
        try:
            conn = self._connect(self.config.write_dsn, self.config.check_timeout)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = %s", (int(self.config.check_timeout * 1000),))
                    cur.execute("SELECT 1")
            finally:
                conn.close()
        except psycopg2.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None


class Cache:
    """Read-through cache. The client is built on first use, so the service starts (and reports
    itself unready) while Redis or the cluster is not reachable yet, then recovers on its own."""

    ERRORS = (redis.RedisError, RedisClusterException)

    def __init__(self, config: Config) -> None:
        self.config = config
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
        if config.redis_cluster:
            nodes = [ClusterNode(*self._split(n)) for n in config.redis_nodes]
            return RedisCluster(startup_nodes=nodes, **common)
        host, port = self._split(config.redis_nodes[0])
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


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.db = Database(config)
        self.cache = Cache(config)

    def readiness(self) -> tuple[int, dict]:
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

    def create_beneficiary(self, payload: object) -> tuple[int, dict]:
        if not isinstance(payload, dict):
            return HTTPStatus.BAD_REQUEST, {"error": "body must be a JSON object"}
        name = payload.get("name")
        program = payload.get("program")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            return HTTPStatus.BAD_REQUEST, {"error": "name must be a string of 1 to 200 characters"}
        if program is not None and not isinstance(program, str):
            return HTTPStatus.BAD_REQUEST, {"error": "program must be a string"}
        rows = self.db.run(
            "write",
            "INSERT INTO beneficiaries (name, program) VALUES (%s, %s) RETURNING id, name, program, created_at",
            (name.strip(), program),
        )
        row = _jsonable(rows[0])
        return HTTPStatus.CREATED, row

    def read_beneficiary(self, beneficiary_id: int) -> tuple[int, dict, str]:
        cached = self.cache.get(beneficiary_id)
        if cached is not None:
            self.metrics.cache_hits.inc()
            return HTTPStatus.OK, cached, "hit"
        self.metrics.cache_misses.inc()
        rows = self.db.run(
            "read", "SELECT id, name, program, created_at FROM beneficiaries WHERE id = %s", (beneficiary_id,)
        )
        if not rows:
            return HTTPStatus.NOT_FOUND, {"error": f"beneficiary {beneficiary_id} not found"}, "miss"
        row = _jsonable(rows[0])
        self.cache.put(beneficiary_id, row)
        return HTTPStatus.OK, row, "miss"


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


SERVED_BY = socket.gethostname()


def route_of(path: str) -> str:
    if BENEFICIARY_PATH.match(path):
        return "/api/agi/beneficiaries/{id}"
    if path in ("/api/agi/health", "/api/agi/health/ready", "/api/agi/beneficiaries", "/metrics"):
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
                if path == "/api/agi/health":
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

"""A sharded rehab-agi on this machine, for tests/integration/test_shard_routing.py and
benchmarks/shards.py: one PostgreSQL and one Redis server per shard of the guide's map on loopback
(Debian's packages, tests/rehab_testlib.py LocalPostgres and LocalRedis), the coordinator built by
rehab.scale.pg_shard_coordinator in a database of shard1's server, and rehab-agi processes run from
app/ with the rehab-shard-map wheel `make release` built. Everything is removed on exit."""

import json
import os
import subprocess
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rehab_testlib import ROOT, LocalPostgres, LocalRedis, free_port, run_playbook, wait_for

GUIDE = [("shard1", 1, 100_000), ("shard2", 100_001, 200_000), ("shard3", 200_001, None)]
OPEN_CAPACITY = 100_000  # the open-ended shard's configured capacity: the three fill alike


def call(base, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def shard_map_wheel():
    """The rehab-shard-map wheel `make release` built, checked to carry today's shard_map.py."""
    wheel = next((ROOT / "roles/app/files/wheels").glob("rehab_shard_map-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        packaged = archive.read("rehab_shard_map.py")
    assert packaged == (ROOT / "plugins/module_utils/shard_map.py").read_bytes(), f"{wheel} is stale: make release"
    return wheel


class AppProcess:
    """rehab-agi from app/, sharded by ``shards_file`` (or, None, unsharded through ``env``)."""

    def __init__(self, directory, shards_file, name, env=None):
        wheel = shard_map_wheel()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'app'}:{wheel}",
            "REHAB_AGI_BIND": "127.0.0.1",
            "REHAB_AGI_PORT": str(self.port),
            "REHAB_AGI_SHARDS": str(shards_file or ""),
            "REHAB_AGI_CHECK_TIMEOUT": "1",
            "REHAB_AGI_SHARD_RETRY": "1",
            "REHAB_AGI_PLACEMENT_REFRESH": "1",
            "REHAB_AGI_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.log = open(directory / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(ROOT / ".venv/bin/python"), "-c", "import sys, rehab_agi; sys.exit(rehab_agi.main())"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, 30, f"rehab-agi {name} to answer on {self.port}")

    def _answers(self):
        if self.process.poll() is not None:
            log = Path(self.log.name).read_text()[-2000:]
            raise AssertionError(f"rehab-agi exited {self.process.returncode}: {log}")
        try:
            return call(self.base, "/api/agi/health")[0] == 200
        except OSError:
            return False

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


READER = ("rehab_reader", "reader-not-secret")  # the role the coordinator reads the shards as


def coordinator_task(servers, check=False):
    """A play running rehab.scale.pg_shard_coordinator on this machine: the coordinator is a database
    on shard1's server (co-located, as a small deployment may), reading each shard as READER."""
    shards = [
        {"name": name, "min_id": low, "max_id": high, "host": "127.0.0.1", "port": server.port}
        for (name, low, high), server in zip(GUIDE, servers, strict=True)
    ]
    shards[-1]["capacity"] = OPEN_CAPACITY
    return [{
        "hosts": "localhost", "gather_facts": False, "check_mode": check,
        "tasks": [{"rehab.scale.pg_shard_coordinator": {
            "dsn": servers[0].dsn("rehab_coordinator"), "shards": shards, "user": "rehab",
            "remote_user": READER[0], "remote_password": READER[1], "server_options": {"sslmode": "disable"},
        }, "register": "built"}, {"ansible.builtin.debug": {"var": "built"}}],
    }]  # fmt: skip


def build_coordinator(directory, servers, check=False):
    playbook = directory / ("coordinator-check.yml" if check else "coordinator.yml")
    playbook.write_text(json.dumps(coordinator_task(servers, check)))
    inventory = directory / "local.yml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    out = run_playbook(playbook, "--diff", inventory=inventory)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    return out


def write_map(path, servers, redises, databases=None, capacity=OPEN_CAPACITY):
    shards = []
    for (name, low, high), server, cache in zip(GUIDE, servers, redises, strict=True):
        shards.append({
            "name": name, "min_id": low, "max_id": high,
            "write_dsn": server.dsn((databases or {}).get(name, "rehab"), "rehab"),
            "redis": {"nodes": [f"127.0.0.1:{cache.port}"], "cluster": False},
        })  # fmt: skip
    if capacity is not None:
        shards[-1]["capacity"] = capacity
    coordinator = {"dsn": servers[0].dsn("rehab_coordinator", "rehab")}
    path.write_text(json.dumps({"shards": shards, "coordinator": coordinator}))
    return path


class ShardLab:
    """The servers, the coordinator and ``apps`` sharded app processes; a context manager."""

    def __init__(self, directory, apps=2):
        self.directory = Path(directory)
        self.app_count = apps
        self.servers, self.redises, self.apps = {}, [], []
        self.coordinator_first_run = None

    def __enter__(self):
        try:
            for name, _, _ in GUIDE:
                server = self.servers[name] = LocalPostgres(f"pg-{name}", password_roles=[READER[0]])
                server.start()
                server.sql("CREATE ROLE rehab LOGIN")
                server.sql("CREATE DATABASE rehab OWNER rehab")
                # Least privilege for the coordinator: it reads the tables the service creates.
                server.sql(f"CREATE ROLE {READER[0]} LOGIN PASSWORD '{READER[1]}'")
                server.sql(f"ALTER DEFAULT PRIVILEGES FOR ROLE rehab GRANT SELECT ON TABLES TO {READER[0]}", "rehab")
            servers = list(self.servers.values())
            servers[0].sql("CREATE DATABASE rehab_coordinator")
            self.coordinator_first_run = build_coordinator(self.directory, servers)
            for _ in GUIDE:
                self.redises.append(LocalRedis(self.directory))
                self.redises[-1].start()
            self.shards_file = write_map(self.directory / "shards.json", servers, self.redises)
            self.apps = [AppProcess(self.directory, self.shards_file, f"app{n}") for n in range(1, self.app_count + 1)]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_):
        for app in self.apps:
            app.stop()
        for cache in self.redises:
            cache.stop()
        for server in self.servers.values():
            server.remove()

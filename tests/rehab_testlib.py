"""Helpers shared by the integration tests, the Molecule verifiers and the benchmarks.

Import with the tests/ directory on sys.path (tests/conftest.py and the callers arrange it).
Everything here acts only on this machine and the lab's own containers.
"""

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The collection, importable as ansible_collections.rehab.scale wherever this module is imported
# (Molecule verifiers run from their scenario directory): its facts, such as tls_path, are read
# from the one place that defines them.
if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.rehab.scale.plugins.filter.tls_path import tls_path  # noqa: E402

LAB_VAULT = ROOT / "inventories/lab/group_vars/all/vault.yml"  # the throwaway lab's secrets, in plaintext


def lab_secret(name):
    """A value of the lab's vault.yml (throwaway secrets), read from there rather than copied."""
    import yaml  # noqa: PLC0415 - PyYAML comes with ansible-core

    return yaml.safe_load(LAB_VAULT.read_text())[name]


def role_default(role, name):
    """A default of one of the collection's roles (roles/<role>/defaults/main.yml), read from there."""
    import yaml  # noqa: PLC0415

    return yaml.safe_load((ROOT / "roles" / role / "defaults/main.yml").read_text())[name]


LAB_DB_PASSWORD = lab_secret("vault_rehab_db_password")
APP_PORT = role_default("app", "app_port")  # where rehab-agi listens on each app server
# Prometheus and Alertmanager login (rehab.scale.monitoring: monitoring_web_user, lab password).
LAB_MONITORING_AUTH = ("rehab-monitor", lab_secret("vault_monitoring_web_password"))


def run_playbook(playbook, *args, inventory=None, env=None, timeout=600):
    """ansible-playbook from the venv with the repository's ansible.cfg. Adds ``.seconds`` (wall time)."""
    command = [str(ROOT / ".venv/bin/ansible-playbook")]
    if inventory is not None:
        command += ["-i", str(inventory)]
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})}
    started = time.monotonic()
    out = subprocess.run(
        [*command, str(playbook), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out.seconds = time.monotonic() - started
    out.text = flat(out.stdout)
    return out


def flat(text):
    """Ansible's YAML output folds long messages over lines (and doubles quotes in single-quoted
    scalars): one line with single spaces, to search for a sentence."""
    return " ".join(text.split()).replace("''", "'")


def psql(node, query, db="rehab"):
    """Run SQL as postgres inside a lab container; return the unaligned output."""
    out = subprocess.run(
        ["docker", "exec", node, "runuser", "-u", "postgres", "--", "psql", "-d", db, "-Atc", query],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"{node}: {query}: {out.stderr}")
    return out.stdout.strip()


def _network_field(node, field):
    out = subprocess.run(
        ["docker", "inspect", "-f", f"{{{{range .NetworkSettings.Networks}}}}{{{{.{field}}}}}{{{{end}}}}", node],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def container_address(node):
    return _network_field(node, "IPAddress")


LAB_IMAGE = "rehab-scale/lab-base:bookworm"  # built by scripts/lab-image.sh


def start_lab_container(name, network, address=None):
    """A lab host as the scenarios' molecule.yml make them: the lab image with systemd as PID 1 and
    no --privileged (LAB.md), on ``network`` (at ``address`` when given). A container of that name is
    removed first. Callers wait for it with wait_booted."""
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--hostname", name, "--network", network,
         *(["--ip", address] if address else []),
         "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cgroupns", "host",
         "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
         "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
         LAB_IMAGE, "/lib/systemd/systemd"],
        check=True, capture_output=True,
    )  # fmt: skip


def container_network(node):
    """The name of the Docker network ``node`` is on (the lab's containers are on one)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}", node],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def container_gateway(node):
    """The address this machine (the control node) has on the container's network."""
    return _network_field(node, "Gateway")


class AckedWriter(threading.Thread):
    """Commits numbered rows into acked_writes; ``acked`` holds every ID whose COMMIT returned.

    ``host`` may list several hosts ("a,b,c"): libpq then connects like the app does, to the first
    one that accepts writes (target_session_attrs=read-write).
    """

    def __init__(self, host, first_id, password=LAB_DB_PASSWORD):
        super().__init__(daemon=True)
        self.host, self.password, self.next_id = host, password, first_id
        self.acked, self.stop, self.error = [], threading.Event(), None

    def run(self):
        import psycopg2  # noqa: PLC0415 - only the writers need the driver

        try:
            conn = psycopg2.connect(
                host=self.host,
                dbname="rehab",
                user="rehab",
                password=self.password,
                connect_timeout=3,
                target_session_attrs="read-write",
                sslmode="require",  # the lab's PostgreSQL admits TCP clients over TLS only
            )
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute("INSERT INTO acked_writes (id) VALUES (%s)", (self.next_id,))
                    self.acked.append(self.next_id)  # only after COMMIT returned: acknowledged
                    self.next_id += 1
        except psycopg2.Error as exc:
            self.error = exc


def write_pg_inventory(directory, primary, replicas, host_vars=None):
    """An inventory of lab containers in the PostgreSQL groups, with the lab's group_vars.

    ``directory`` receives hosts.yml plus links to inventories/lab/group_vars and, when given,
    to a host_vars directory. Returns ``directory`` for use as ``-i``.
    """
    directory = Path(directory)
    lines = [
        "all:",
        "  children:",
        "    lab:",  # the lab's group_vars say how to reach a lab container
        "      children:",
        "        postgresql:",
        "          children:",
        "            pg_primary:",
        "              hosts:",
        f"                {primary}:",
        "            pg_replicas:",
        "              hosts:",
        *[f"                {replica}:" for replica in replicas],
    ]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    links = {"group_vars": ROOT / "inventories/lab/group_vars"}
    if host_vars is not None:
        links["host_vars"] = Path(host_vars)
    for name, target in links.items():
        link = directory / name
        if not link.exists():
            link.symlink_to(target)
    return directory


def wait_booted(node, timeout=60):
    """Wait until systemd in a lab container has finished booting; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "exec", node, "systemctl", "is-system-running"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if state in ("running", "degraded"):
            return True
        time.sleep(1)
    return False


def docker_exec(node, *command, timeout=60):
    """Run a command in a lab container; return the CompletedProcess (text)."""
    return subprocess.run(
        ["docker", "exec", node, *command], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_tls_verified(client, address, port, starttls=None):
    """From the lab container ``client``, as openssl sees the server at ``address:port``: its
    certificate chains to the environment's CA and names ``address`` (openssl s_client
    -verify_return_error -verify_ip). ``starttls``: e.g. "postgres" for PostgreSQL's negotiation."""
    starttls = f" -starttls {starttls}" if starttls else ""
    out = docker_exec(
        client, "sh", "-c",
        f"openssl s_client{starttls} -connect {address}:{port} -CAfile {tls_path('ca')} -verify_return_error"
        f" -verify_ip {address} </dev/null",
    )  # fmt: skip
    assert out.returncode == 0, f"{address}:{port} from {client}: {out.stderr[-2000:]}"
    assert "Verify return code: 0 (ok)" in out.stdout, f"{address}:{port} from {client}"


HAPROXY_SOCKET_CLIENT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(sys.argv[2].encode() + b'\\n')\n"
    "print(s.makefile().read())\n"
)


def haproxy_command(lb, command, socket_path="/run/haproxy/admin.sock"):
    """One command on HAProxy's runtime API inside the balancer container; returns its output."""
    out = docker_exec(lb, "python3", "-c", HAPROXY_SOCKET_CLIENT, socket_path, command)
    if out.returncode != 0:
        raise AssertionError(f"{lb}: {command}: {out.stderr}")
    return out.stdout


def parse_haproxy_stat(csv_text, backend="rehab_agi", field="status"):
    """{server: field} from HAProxy's `show stat` CSV (the runtime API's or the stats page's ;csv)."""
    lines = csv_text.splitlines()
    header = lines[0].lstrip("# ").split(",")
    values = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
            values[row["svname"]] = row[field]
    return values


def haproxy_status(lb, backend="rehab_agi"):
    """{server: status} of a backend as HAProxy sees it (UP, DOWN, MAINT, DRAIN, ...)."""
    return parse_haproxy_stat(haproxy_command(lb, "show stat"), backend)


def haproxy_checks(lb, backend="rehab_agi"):
    """{server: (status, last check's status)} of a backend, e.g. ("DOWN", "L4CON") for a refused check."""
    stat = haproxy_command(lb, "show stat")
    checks = parse_haproxy_stat(stat, backend, "check_status")
    return {server: (status, checks[server]) for server, status in parse_haproxy_stat(stat, backend).items()}


def lab_tls_context(node):
    """An SSL context that trusts the environment's CA (read from ``node``) and checks host names."""
    out = docker_exec(node, "cat", tls_path("ca"))
    if out.returncode != 0:
        raise AssertionError(f"{node}: no CA certificate at {tls_path('ca')}: {out.stderr}")
    return ssl.create_default_context(cadata=out.stdout)


def assert_sandboxed(host, unit, families=("AF_UNIX", "AF_INET", "AF_INET6")):
    """The sandbox of rehab.scale.systemd_sandbox, as systemd applied it to the running ``unit`` on
    the testinfra ``host`` (not what a unit file says), and a process with no capability at all."""

    def show(prop):
        return host.check_output(f"systemctl show -p {prop} --value {unit}")

    assert show("CapabilityBoundingSet") == "", unit
    assert show("ProtectSystem") == "strict", unit
    assert show("PrivateDevices") == "yes", unit
    assert show("NoNewPrivileges") == "yes", unit
    assert set(show("RestrictAddressFamilies").split()) == set(families), unit
    assert show("NRestarts") == "0", f"{unit} restarted: killed by its sandbox?"
    status = host.check_output(f"cat /proc/{show('MainPID')}/status")
    caps = dict(line.split(":\t") for line in status.splitlines() if line.startswith("Cap"))
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000", (unit, caps)


def prometheus_api(host, path, port=9090):
    """Prometheus' API (``data`` of the answer) from a testinfra ``host`` in the lab (the monitoring
    host itself): HTTPS verified against the environment's CA at the host's address, with the login."""
    import json  # noqa: PLC0415

    address = host.interface("eth0").addresses[0]
    user, password = LAB_MONITORING_AUTH
    out = host.run(
        f"curl -sf -m 10 --cacert {tls_path('ca')} -u {user}:{password} https://{address}:{port}/api/v1/{path}"
    )
    assert out.rc == 0, f"{path}: {out.stderr}"
    return json.loads(out.stdout)["data"]


class HttpLoad(threading.Thread):
    """GETs ``url`` in a loop until stopped; counts answers by status and by X-Served-By.

    ``context``: the SSL context for an https URL (lab_tls_context)."""

    def __init__(self, url, timeout=5.0, context=None):
        super().__init__(daemon=True)
        self.url, self.timeout, self.context = url, timeout, context
        self.by_status, self.by_server, self.errors = {}, {}, []
        self.stop = threading.Event()

    def run(self):
        import urllib.error  # noqa: PLC0415
        import urllib.request  # noqa: PLC0415

        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout, context=self.context) as response:  # noqa: S310
                    status, server = response.status, response.headers.get("X-Served-By", "?")
                    response.read()
            except urllib.error.HTTPError as exc:
                status, server = exc.code, exc.headers.get("X-Served-By", "?")
            except OSError as exc:
                status, server = 0, "?"
                self.errors.append(repr(exc))
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self.by_server[server] = self.by_server.get(server, 0) + 1

    @property
    def failed(self):
        return sum(n for status, n in self.by_status.items() if status != 200)

    @property
    def total(self):
        return sum(self.by_status.values())


def build_release(version, directory, replace=None, migrations=None):
    """A rehab-agi release wheel of the reference service (app/) at ``version``, built by the toolkit's
    own scripts/build-release.sh from a copy whose ``__version__`` (and ``replace``: {old: new} text
    edits of the code, such as a deliberate fault) is changed, with the SQL files of the directory
    ``migrations`` added to its own. Returns the wheel's path."""
    import re  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    source = Path(directory) / f"src-{version}"
    shutil.copytree(ROOT / "app", source, ignore=shutil.ignore_patterns("__pycache__"))
    module = source / "rehab_agi/__init__.py"
    code = re.sub(r'(?m)^__version__ = "[^"]+"$', f'__version__ = "{version}"', module.read_text())
    for old, new in (replace or {}).items():
        assert old in code, f"{old!r} not in the reference code"
        code = code.replace(old, new)
    module.write_text(code)
    for sql in sorted(Path(migrations).glob("*.sql")) if migrations else []:
        shutil.copy(sql, source / "rehab_agi/migrations" / sql.name)
    out = subprocess.run(
        [str(ROOT / "scripts/build-release.sh"), str(source), str(Path(directory) / "dist")],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def wait_for(predicate, timeout=60, what="condition", interval=0.5):
    """Poll ``predicate`` until it is truthy; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def try_write(host, row_id, password=LAB_DB_PASSWORD):
    """One INSERT into acked_writes on ``host`` alone; True when it was committed."""
    import psycopg2  # noqa: PLC0415 - only the writers need the driver

    try:
        conn = psycopg2.connect(
            host=host, dbname="rehab", user="rehab", password=password, connect_timeout=2, sslmode="require"
        )
    except psycopg2.Error:
        return False
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO acked_writes (id) VALUES (%s)", (row_id,))
        return True
    except psycopg2.Error:
        return False
    finally:
        conn.close()


def free_port():
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPostgres:
    """A throwaway PostgreSQL server on loopback, from the machine's Debian packages (postgresql-15),
    run as the postgres user (initdb refuses root); trust authentication on 127.0.0.1, except for
    ``password_roles`` (scram-sha-256: postgres_fdw lets a non-superuser connect only with a
    password). ``kill()`` ends it the way a lost host does (SIGKILL to every process); ``start()``
    again runs crash recovery."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self, name, password_roles=()):
        import tempfile  # noqa: PLC0415

        # Its own directory under /tmp: pytest's are private to root, and the server runs as postgres.
        self.data = Path(tempfile.mkdtemp(prefix=f"rehab-{name}-"))
        self.port = free_port()
        shutil_chown(self.data, "postgres")
        self._as_postgres(self.BIN / "initdb", "-A", "trust", "-U", "postgres", "-D", self.data)
        conf = self.data / "postgresql.conf"
        settings = f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.data}'\n"
        conf.write_text(conf.read_text() + settings + "fsync = off\nshared_buffers = 32MB\n")
        hba = ["local all all trust"]
        hba += [f"host all {role} 127.0.0.1/32 scram-sha-256" for role in password_roles]
        (self.data / "pg_hba.conf").write_text("\n".join([*hba, "host all all 127.0.0.1/32 trust", ""]))

    def _as_postgres(self, *command, check=True):
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, command)],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def start(self):
        log = self.data / "server.log"
        self._as_postgres(self.BIN / "pg_ctl", "-D", self.data, "-l", log, "-w", "-t", "60", "start")

    def freeze(self, frozen=True):
        """SIGSTOP (or SIGCONT) the postmaster: connections are accepted by the kernel and never
        answered, as a lost host's wait out their timeout."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def kill(self):
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
        os.kill(pid, 9)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, f"postmaster {pid} to end")

    def stop(self):
        self._as_postgres(self.BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)

    def remove(self):
        import shutil  # noqa: PLC0415

        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def sql(self, query, db="postgres"):
        out = self._as_postgres(
            self.BIN / "psql", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", "-d", db,
            "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", query, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise AssertionError(f"psql on :{self.port}/{db}: {out.stderr.strip()}")
        return out.stdout.strip()

    def dsn(self, db, user="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={db} user={user} sslmode=disable"


def shutil_chown(path, user):
    import shutil  # noqa: PLC0415

    shutil.chown(path, user, user)


class LocalRedis:
    """A throwaway Redis server on loopback (Debian's redis-server), no persistence."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = Path(directory)
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self):
        if self.process:
            self.process.kill()
            self.process.wait()

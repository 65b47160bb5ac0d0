"""Redis role (was the redis scenario): authentication required, one least-privilege ACL user per
job, protected mode, memory limits, an exporter that cannot hand its password to another host; on
the Phase 1 standalone Redis host."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from rehab_testlib import assert_sandboxed, assert_tls_verified, lab_secret, tls_path

testinfra_hosts = ["p1-redis1"]

ADMIN = lab_secret("vault_rehab_redis_password")
APP = lab_secret("vault_rehab_redis_app_password")
EXPORTER = lab_secret("vault_rehab_redis_exporter_password")
CA = tls_path("ca")

# A fake Redis on a free port that records what a client sends first, while the exporter is asked
# to scrape it (/scrape?target=): the request a stranger could make to steal a password.
CAPTURE = """
import socket, threading, urllib.request
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
port = server.getsockname()[1]
def scrape():
    url = f"http://127.0.0.1:9121/scrape?target=redis://127.0.0.1:{port}"
    try:
        urllib.request.urlopen(url, timeout=10).read()
    except Exception:
        pass
threading.Thread(target=scrape, daemon=True).start()
server.settimeout(10)
conn, _ = server.accept()
conn.settimeout(2)
data = b""
try:
    while len(data) < 4096:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print(repr(data))
"""


def addr(host):
    return host.interface("eth0").addresses[0]


def cli(host, args, user=None, password=None, tls=True):
    """redis-cli over TLS (the environment's CA) to the host's address, with the password in the
    environment (REDISCLI_AUTH), never in argv."""
    auth = f"REDISCLI_AUTH='{password}' redis-cli --user {user}" if user else "redis-cli"
    return host.run(f"{auth} {f'--tls --cacert {CA}' if tls else ''} -h {addr(host)} {args}")


def test_plaintext_refused_and_tls_verified(host):
    # port 0: nothing answers plaintext; the TLS port drops a plaintext client before any reply.
    plain = cli(host, "ping", tls=False)
    assert "PONG" not in plain.stdout and "NOAUTH" not in plain.stdout, plain.stdout
    assert_tls_verified("p1-app1", addr(host), 6379)
    assert "NOAUTH" in cli(host, "ping").stdout  # over TLS it answers, and still wants a login


def test_running(host):
    assert host.service("redis-server").is_running


def test_unauthenticated_refused_and_default_user_off(host):
    assert "NOAUTH" in cli(host, "ping").stdout
    # The old shared `default` login no longer works with any password.
    assert "WRONGPASS" in cli(host, "ping", "default", ADMIN).stdout + cli(host, "ping", "default", ADMIN).stderr


def test_app_user_scoped_to_its_keys(host):
    assert cli(host, "set rehab:probe 1", "rehab", APP).stdout.strip() == "OK"
    assert "NOPERM" in cli(host, "set other:probe 1", "rehab", APP).stdout
    assert "NOPERM" in cli(host, "flushall", "rehab", APP).stdout


def test_exporter_user_reads_server_state_and_nothing_else(host):
    assert "redis_version" in cli(host, "info server", "exporter", EXPORTER).stdout
    for command in ("get rehab:probe", "set rehab:probe 2", "config set maxmemory 1", "keys rehab:probe", "flushall"):
        assert "NOPERM" in cli(host, command, "exporter", EXPORTER).stdout, command


def test_admin_settings(host):
    def get(name):
        return cli(host, f"config get {name}", "admin", ADMIN).stdout.split()[1]

    assert get("protected-mode") == "yes"
    assert get("maxmemory") == str(128 * 1024 * 1024)
    assert get("maxmemory-policy") == "allkeys-lru"
    bind = get("bind")
    assert "0.0.0.0" not in bind and "*" not in bind


def test_no_plaintext_password_on_disk(host):
    acl = host.file("/etc/redis/users.acl")
    assert acl.mode == 0o640
    for secret in (ADMIN, APP, EXPORTER):
        assert secret not in acl.content_string
    env = host.file("/etc/default/rehab-redis-exporter-standalone").content_string
    assert EXPORTER not in env and ADMIN not in env


def test_exporter_password_is_bound_to_the_local_instance(host):
    passwords = host.file("/etc/default/rehab-redis-exporter-standalone.passwords.json")
    assert passwords.mode == 0o640 and passwords.user == "root" and passwords.group == "prometheus"
    assert json.loads(passwords.content_string) == {f"rediss://{addr(host)}:6379": EXPORTER}
    # It does log in to its own instance (so the file is used, not ignored) ...
    assert "redis_up 1" in host.check_output("curl -s http://127.0.0.1:9121/metrics")


def test_scrape_of_another_target_carries_no_password(host):
    # ... and a /scrape?target= naming another server gets no AUTH and no password.
    sent = host.check_output(f"python3 -c '{CAPTURE}'")
    assert sent != "b''", "the exporter never connected: the test proves nothing"
    assert EXPORTER not in sent and ADMIN not in sent
    assert "AUTH" not in sent.upper()


def test_exporter_runs_in_the_sandbox(host):
    # Scraped first: a system call its sandbox denies would kill it then (NRestarts counts it).
    assert "redis_up 1" in host.check_output("curl -s http://127.0.0.1:9121/metrics")
    assert_sandboxed(host, "rehab-redis-exporter@standalone")

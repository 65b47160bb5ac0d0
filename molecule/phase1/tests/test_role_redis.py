"""Redis role (was the redis scenario): authentication required, ACL scoping, protected mode, memory
limits; on the Phase 1 standalone Redis host."""

testinfra_hosts = ["p1-redis1"]

ADMIN = "lab-redis-admin-not-secret"
APP = "lab-redis-app-not-secret"


def cli(host, args, user=None, password=None):
    auth = f"--user {user} --pass {password} --no-auth-warning" if user else ""
    return host.run(f"redis-cli -h 127.0.0.1 {auth} {args}")


def test_running(host):
    assert host.service("redis-server").is_running


def test_unauthenticated_refused(host):
    assert "NOAUTH" in cli(host, "ping").stdout


def test_app_user_scoped_to_its_keys(host):
    assert cli(host, "set rehab:probe 1", "rehab", APP).stdout.strip() == "OK"
    assert "NOPERM" in cli(host, "set other:probe 1", "rehab", APP).stdout
    assert "NOPERM" in cli(host, "flushall", "rehab", APP).stdout


def test_admin_settings(host):
    def get(name):
        return cli(host, f"config get {name}", "default", ADMIN).stdout.split()[1]

    assert get("protected-mode") == "yes"
    assert get("maxmemory") == str(128 * 1024 * 1024)
    assert get("maxmemory-policy") == "allkeys-lru"
    bind = get("bind")
    assert "0.0.0.0" not in bind and "*" not in bind


def test_no_plaintext_password_on_disk(host):
    acl = host.file("/etc/redis/users.acl")
    assert acl.mode == 0o640
    assert ADMIN not in acl.content_string and APP not in acl.content_string

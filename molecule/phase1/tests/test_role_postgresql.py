"""PostgreSQL role (was the postgresql scenario): scram-only access, hba from variables, RAM-derived
tuning, extra settings from host_vars/p1-pg1.yml; on the Phase 1 database host."""

import testinfra

testinfra_hosts = ["p1-pg1"]

PSQL = "PGPASSWORD='{pw}' psql -h {host} -U rehab -d rehab -Atc '{sql}'"
GOOD = "lab-db-password-not-secret"


def addr(host):
    return host.interface("eth0").addresses[0]


def test_service_running(host):
    assert host.service("postgresql@15-main").is_running


def test_password_login_from_the_app_server_only(host):
    # pg_hba admits the app servers (and the cluster, and the monitoring networks), nobody else:
    # the app server logs in over the network, the database host's own address is refused.
    app = testinfra.get_host("docker://p1-app1")
    login = (
        f"import psycopg2; c = psycopg2.connect(host='{addr(host)}', user='rehab', password='{GOOD}', dbname='rehab');"
        " cur = c.cursor(); cur.execute('select current_user'); print(cur.fetchone()[0])"
    )
    out = app.run(f'python3 -c "{login}"')
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "rehab"
    refused = host.run(PSQL.format(pw=GOOD, host=addr(host), sql="select 1"))
    assert refused.rc != 0
    assert "no pg_hba.conf entry" in refused.stderr


def test_wrong_password_refused(host):
    out = host.run(PSQL.format(pw="wrong", host="127.0.0.1", sql="select 1"))
    assert out.rc != 0
    assert "password authentication failed" in out.stderr


def test_password_stored_as_scram(host):
    sql = "select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname='rehab'"
    out = host.run(f'runuser -u postgres -- psql -Atc "{sql}"')
    assert out.stdout.strip() == "t"


def test_hba_has_no_trust_and_no_world(host):
    hba = host.file("/etc/postgresql/15/main/pg_hba.conf").content_string
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules, "pg_hba.conf has no rules"
    assert all(rule[-1] in ("peer", "scram-sha-256", "reject") for rule in rules)
    assert not any(addr in ("0.0.0.0/0", "::/0", "all") for rule in rules for addr in rule[3:4] if rule[0] != "local")


def test_tuning_derived_from_memory(host):
    # The lab sizes PostgreSQL as a 1024 MiB host: shared_buffers is a quarter of it.
    out = host.run("runuser -u postgres -- psql -Atc 'show shared_buffers'")
    assert out.stdout.strip() == "256MB"
    out = host.run("runuser -u postgres -- psql -Atc 'show password_encryption'")
    assert out.stdout.strip() == "scram-sha-256"


def test_extra_settings_applied(host):
    out = host.run("runuser -u postgres -- psql -Atc 'show log_min_duration_statement'")
    assert out.stdout.strip() == "500ms"

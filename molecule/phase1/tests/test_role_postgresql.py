"""PostgreSQL role (was the postgresql scenario): scram-only access, hba from variables, RAM-derived
tuning, extra settings from host_vars/p1-pg1.yml; on the Phase 1 database host."""

import sys
from pathlib import Path

import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from rehab_testlib import APP_PORT, assert_sandboxed, assert_tls_verified, tls_path

testinfra_hosts = ["p1-pg1"]
CA = tls_path("ca")

PSQL = "PGPASSWORD='{pw}' psql -h {host} -U rehab -d rehab -Atc '{sql}'"
GOOD = "lab-db-password-not-secret"


def addr(host):
    return host.interface("eth0").addresses[0]


def test_service_running(host):
    assert host.service("postgresql@15-main").is_running


def app_login(host, sslmode):
    """Log in as the app from the app server, as the app does (psycopg2), with this sslmode."""
    login = (
        f"import psycopg2; c = psycopg2.connect(host='{addr(host)}', user='rehab', password='{GOOD}',"
        f" dbname='rehab', sslmode='{sslmode}', sslrootcert='{CA}'); cur = c.cursor();"
        " cur.execute('select current_user'); print(cur.fetchone()[0])"
    )
    return testinfra.get_host("docker://p1-app1").run(f'python3 -c "{login}"')


def test_password_login_from_the_app_server_only(host):
    # pg_hba admits the app servers (and the cluster, and the monitoring networks), nobody else:
    # the app server logs in over the network, the database host's own address is refused.
    out = app_login(host, "verify-full")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "rehab"
    refused = host.run(PSQL.format(pw=GOOD, host=addr(host), sql="select 1"))
    assert refused.rc != 0
    assert "no pg_hba.conf entry" in refused.stderr


def test_plaintext_refused(host):
    # hostssl only: the same login without TLS matches no pg_hba line.
    out = app_login(host, "disable")
    assert out.rc != 0
    assert "no encryption" in out.stderr, out.stderr


def test_certificate_verifies_with_the_environment_ca(host):
    # From the app server, as a client would: the server's certificate chains to the CA and names
    # the address clients use (the one address rule).
    assert_tls_verified("p1-app1", addr(host), 5432, starttls="postgres")


def test_app_and_exporter_connect_over_tls(host):
    # The app opens a connection for each readiness check, the exporter keeps one for its scrapes.
    app = testinfra.get_host("docker://p1-app1")
    assert app.run(f"curl -sf -m 10 http://127.0.0.1:{APP_PORT}/api/agi/health/ready").rc == 0
    scrape = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9187/metrics', timeout=10).read()"
    assert host.run(f'python3 -c "{scrape}"').rc == 0
    # log_connections (host_vars/p1-pg1.yml): every login of the app says how it was encrypted.
    log = host.check_output(
        "grep -h 'connection authorized: user=rehab database=rehab' /var/log/postgresql/postgresql-15-main.log"
    )
    app_logins = [line for line in log.splitlines() if "application_name=rehab-agi" in line]
    assert app_logins, log[-2000:]
    assert all("SSL enabled (protocol=TLSv1." in line for line in app_logins), app_logins[-3:]
    exporter = host.check_output(
        'runuser -u postgres -- psql -Atc "select count(*), bool_and(s.ssl) from pg_stat_activity a'
        " join pg_stat_ssl s using (pid) where a.usename = 'rehab_monitor'\""
    )
    assert exporter.split("|")[1] == "t", exporter


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


def test_exporter_runs_in_the_sandbox(host):
    # Scraped first: a system call its sandbox denies would kill it then (NRestarts counts it).
    assert "pg_up 1" in host.check_output("curl -s http://127.0.0.1:9187/metrics")
    assert_sandboxed(host, "prometheus-postgres-exporter")


def test_service_roles_hold_only_what_they_need(host):
    # The monitoring role reads statistics (pg_monitor) and nothing else; no login role but postgres
    # is a superuser or may create roles or databases.
    roles = host.check_output(
        'runuser -u postgres -- psql -Atc "select rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication'
        ' from pg_roles where rolcanlogin order by 1"'
    )
    assert roles.splitlines() == ["postgres|t|t|t|t", "rehab|f|f|f|f", "rehab_monitor|f|f|f|f"], roles
    member_of = host.check_output(
        'runuser -u postgres -- psql -Atc "select b.rolname from pg_auth_members m join pg_roles a on a.oid = m.member'
        " join pg_roles b on b.oid = m.roleid where a.rolname = 'rehab_monitor'\""
    )
    assert member_of.split() == ["pg_monitor"]

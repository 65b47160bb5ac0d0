"""Helpers shared by the integration tests, the Molecule verifiers and the benchmarks.

Import with the tests/ directory on sys.path (tests/conftest.py and the callers arrange it).
Everything here acts only on this machine and the lab's own containers.
"""

import os
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB_DB_PASSWORD = "lab-db-password-not-secret"  # inventories/lab/group_vars/all/vault.yml (throwaway)


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
    return out


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


def container_address(node):
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", node],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


class AckedWriter(threading.Thread):
    """Commits numbered rows into acked_writes; ``acked`` holds every ID whose COMMIT returned."""

    def __init__(self, host, first_id, password=LAB_DB_PASSWORD):
        super().__init__(daemon=True)
        self.host, self.password, self.next_id = host, password, first_id
        self.acked, self.stop, self.error = [], threading.Event(), None

    def run(self):
        import psycopg2  # noqa: PLC0415 - only the writers need the driver

        try:
            conn = psycopg2.connect(
                host=self.host, dbname="rehab", user="rehab", password=self.password, connect_timeout=3
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
        "  vars:",
        "    ansible_connection: community.docker.docker",
        "  children:",
        "    postgresql:",
        "      children:",
        "        pg_primary:",
        "          hosts:",
        f"            {primary}:",
        "        pg_replicas:",
        "          hosts:",
        *[f"            {replica}:" for replica in replicas],
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

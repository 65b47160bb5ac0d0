#!/usr/bin/env python3
"""Benchmarks of the Phase 2 balancer on the lab (`make lab` first: inventories/lab, Phase 2).

    .venv/bin/python benchmarks/phase2.py throughput [--duration 20 --connections 32]
    .venv/bin/python benchmarks/phase2.py dead-server [--runs 5]
    .venv/bin/python benchmarks/phase2.py rolling

throughput   wrk (Debian's, installed in lab-mon1 on first use) through HAProxy (lab-lb1) over plain HTTP
             and over HTTPS, same run, same URL (a cached beneficiary read), same load; prints
             requests/s, average and p99 latency, and the ratio. Plain HTTP only redirects by default,
             so the run first re-deploys with haproxy_plaintext_reason set (both served), and puts
             the default back after (two phase2.yml runs, about 40 s each).
dead-server  under steady load, stop rehab-agi on lab-app2 (refused) or freeze it (hung, SIGSTOP) and
             time until HAProxy marks it DOWN; counts failed requests; mends it and waits until UP
             again. Repeated --runs times for each fault.
rolling      under steady load, run playbooks/phase2.yml with a changed app setting, so every app
             server restarts one at a time (drain, restart, ready, enable); counts failed requests.
release      under steady load, roll out a new release of the reference service (its version with a
             ".post<N>" suffix, built by scripts/build-release.sh into a temporary directory) with
             playbooks/release.yml, then go back with playbooks/rollback.yml; times each and counts
             failed requests. The lab ends on the release it ran before; the new one stays installed
             (app_keep_releases prunes it later).

Traffic goes only to the lab's own containers.
"""

import argparse
import base64
import functools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import (  # noqa: E402
    APP_PORT,
    HttpLoad,
    build_release,
    container_address,
    docker_exec,
    haproxy_status,
    lab_tls_context,
    parse_haproxy_stat,
    run_playbook,
)

LB, CLIENT, DIRECT, VICTIM = "lab-lb1", "lab-mon1", "lab-app1", "lab-app2"
APPS = ("lab-app1", "lab-app2", "lab-app3")
STATS_AUTH = "admin:lab-haproxy-stats-not-secret"  # inventories/lab/group_vars/all/vault.yml (throwaway)


@functools.cache
def lb_address():
    return container_address(LB)


@functools.cache
def tls():
    """Verify the lab's certificates with its own CA, as its clients do."""
    return lab_tls_context(LB)


def pool_status(server):
    """The server's status from the statistics CSV: one HTTPS request (milliseconds), not a docker exec."""
    req = urllib.request.Request(f"https://{lb_address()}:8404/stats;csv")
    req.add_header("Authorization", "Basic " + base64.b64encode(STATS_AUTH.encode()).decode())
    with urllib.request.urlopen(req, timeout=5, context=tls()) as response:  # noqa: S310
        statuses = parse_haproxy_stat(response.read().decode())
    if server in statuses:
        return statuses[server]
    raise SystemExit(f"{server} not in the rehab_agi backend")


def beneficiary_url(base):
    req = urllib.request.Request(  # noqa: S310 - lab URL
        f"{base}/api/agi/beneficiaries",
        data=json.dumps({"name": "Benchmark", "program": "wrk"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10, context=tls()) as response:  # noqa: S310
        created = json.loads(response.read())
    return f"/api/agi/beneficiaries/{created['id']}"


def wrk(url, duration, connections, threads):
    out = docker_exec(
        CLIENT, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url, timeout=duration + 60
    )
    if out.returncode != 0:
        raise SystemExit(out.stdout + out.stderr)
    text = out.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    avg = re.search(r"Latency\s+([\d.]+)(us|ms|s)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": rate,
        "avg_ms": float(avg.group(1)) * scale[avg.group(2)],
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)],
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def deploy(*extra):
    out = run_playbook(ROOT / "playbooks/phase2.yml", *extra, inventory=ROOT / "inventories/lab")
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:])


def throughput(args):
    if docker_exec(CLIENT, "sh", "-c", "command -v wrk").returncode != 0:
        docker_exec(CLIENT, "apt-get", "install", "-y", "-q", "wrk", timeout=300)
    deploy("-e", "haproxy_plaintext_reason='benchmark: the plain HTTP figure'")
    try:
        path = beneficiary_url(f"https://{lb_address()}")
        results = {}
        # Explicit ports: minbase has no /etc/services.
        for name, url in (
            ("HAProxy, plain HTTP", f"http://{LB}:80{path}"),
            ("HAProxy, HTTPS (TLS 1.3)", f"https://{LB}:443{path}"),
        ):
            wrk(url, 3, args.connections, args.threads)  # warm-up: cache filled, connections opened
            results[name] = wrk(url, args.duration, args.connections, args.threads)
    finally:
        deploy()  # plain HTTP back to redirect-only
    for name, r in results.items():
        latency = f"avg {r['avg_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms"
        print(f"{name:28s} {r['rps']:8.0f} req/s  {latency}  non-2xx {r['non_2xx']}")
    plain, tls_ = results.values()
    print(f"ratio HTTPS/plain: throughput {tls_['rps'] / plain['rps']:.2f}x, "
          f"average latency {tls_['avg_ms'] / plain['avg_ms']:.2f}x")  # fmt: skip


FAULTS = {
    # refused: rehab-agi stopped, nginx answers 502 at once. hung: the process frozen (SIGSTOP),
    # every check times out. (A SIGKILL is not a fault here: systemd restarts the service at once.)
    "refused": (("systemctl", "stop", "--no-block", "rehab-agi"), ("systemctl", "start", "rehab-agi")),
    "hung": (
        ("systemctl", "kill", "--signal=SIGSTOP", "rehab-agi"),
        ("systemctl", "kill", "--signal=SIGCONT", "rehab-agi"),
    ),
}


def dead_server(args):
    base = f"https://{lb_address()}"
    load = HttpLoad(base + beneficiary_url(base), context=tls())
    load.start()
    times = {fault: [] for fault in FAULTS}
    lb_address()  # resolved once, outside the timed loop
    try:
        for _ in range(args.runs):
            for fault, (break_it, mend_it) in FAULTS.items():
                time.sleep(2)
                docker_exec(VICTIM, *break_it)
                broken = time.monotonic()  # the fault is in effect once the command returned
                while not pool_status(VICTIM).startswith("DOWN"):
                    if time.monotonic() - broken > 15:
                        raise SystemExit(f"{VICTIM} still in the pool after 15 s: {haproxy_status(LB)}")
                    time.sleep(0.02)
                times[fault].append(time.monotonic() - broken)
                docker_exec(VICTIM, *mend_it)
                while pool_status(VICTIM) != "UP":
                    time.sleep(0.2)
    finally:
        load.stop.set()
        load.join()
    for fault, seconds in times.items():
        each = ", ".join(f"{t:.2f}" for t in seconds)
        median, worst = statistics.median(seconds), max(seconds)
        print(f"{fault:8s} server out of the pool: median {median:.2f} s, worst {worst:.2f} s ({each})")
    print(f"requests: {load.total}, failed: {load.failed} {load.by_status}")


def rolling(args):
    base = f"https://{lb_address()}"
    current = docker_exec(DIRECT, "grep", "REHAB_AGI_LOG_LEVEL", "/etc/rehab-agi/rehab-agi.env").stdout
    level = "INFO" if "DEBUG" in current else "DEBUG"
    load = HttpLoad(base + beneficiary_url(base), context=tls())
    load.start()
    playbook, inventory = ROOT / "playbooks/phase2.yml", ROOT / "inventories/lab"
    out = run_playbook(playbook, "-e", f"app_log_level={level}", inventory=inventory)
    load.stop.set()
    load.join()
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:])
    restarts = out.stdout.count("RUNNING HANDLER [rehab.scale.app : Restart the rehab-agi service]")
    print(f"rolling update (app_log_level={level}): {restarts} servers restarted in {out.seconds:.0f} s")
    print(f"requests: {load.total}, failed: {load.failed} {load.by_status}")


def running_version(app):
    out = docker_exec(app, "curl", "-fsS", f"http://127.0.0.1:{APP_PORT}/api/agi/health")
    return json.loads(out.stdout)["version"]


def timed_under_load(playbook, *extra):
    base = f"https://{lb_address()}"
    load = HttpLoad(base + beneficiary_url(base), context=tls())
    load.start()
    out = run_playbook(ROOT / "playbooks" / playbook, *extra, inventory=ROOT / "inventories/lab")
    load.stop.set()
    load.join()
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:])
    return out.seconds, load


def release(args):
    before = running_version(DIRECT)
    version = f"{before.split('+')[0]}.post{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="rehab-release-") as directory:
        wheel = build_release(version, directory)
        release = {"app_release": {"src": str(wheel), "wheels": str(wheel.parent / "wheels")}}
        rollout = timed_under_load("release.yml", "-e", json.dumps(release))
    rows = [("release.yml", version, *rollout)]
    versions = {app: running_version(app) for app in APPS}
    if set(versions.values()) != {version}:
        raise SystemExit(f"after release.yml: {versions}, expected {version} everywhere")
    rows.append(("rollback.yml", before, *timed_under_load("rollback.yml")))
    versions = {app: running_version(app) for app in APPS}
    if set(versions.values()) != {before}:
        raise SystemExit(f"after rollback.yml: {versions}, expected {before} everywhere")
    for playbook, target, seconds, load in rows:
        print(f"{playbook:13s} to {target:22s} {len(APPS)} servers in {seconds:5.1f} s; "
              f"requests {load.total}, failed {load.failed} {load.by_status}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--duration", type=int, default=20)
    t.add_argument("--connections", type=int, default=32)
    t.add_argument("--threads", type=int, default=2)
    d = sub.add_parser("dead-server")
    d.add_argument("--runs", type=int, default=5)
    sub.add_parser("rolling")
    sub.add_parser("release")
    args = parser.parse_args()
    {"throughput": throughput, "dead-server": dead_server, "rolling": rolling, "release": release}[args.what](args)


if __name__ == "__main__":
    subprocess.run(["docker", "info"], capture_output=True, check=True)
    main()

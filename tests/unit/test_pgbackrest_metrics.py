"""The drop parser of roles/pgbackrest/files/pgbackrest-metrics.py (the script each PostgreSQL node's
metrics timer runs): a drop past the queue bound is never reported as "never dropped"."""

import importlib.util
import os
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "roles/pgbackrest/files/pgbackrest-metrics.py"
spec = importlib.util.spec_from_file_location("pgbackrest_metrics", SCRIPT)
metrics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(metrics)

DROP = "P00   WARN: dropped WAL file '000000010000000000000007' because archive queue exceeded 32MB"


def test_the_last_drop_is_dated_by_its_line(tmp_path):
    log = tmp_path / "rehab-archive-push-async.log"
    log.write_text(
        "2026-11-28 08:40:00.001 P00   INFO: archive-push:async command begin\n"
        f"2026-11-28 08:48:45.123 {DROP}\n"
        f"2026-11-28 08:48:46.500 {DROP}\n"
    )
    count, last = metrics.dropped(log)
    assert (count, last) == (2, time.mktime(time.strptime("2026-11-28 08:48:46", "%Y-%m-%d %H:%M:%S")))


def test_a_drop_without_a_readable_time_is_dated_by_the_log_not_zero(tmp_path):
    log = tmp_path / "rehab-archive-push-async.log"
    log.write_text(f"{DROP}\n")
    os.utime(log, (1_800_000_000, 1_800_000_000))
    assert metrics.dropped(log) == (1, 1_800_000_000.0)


def test_no_log_or_no_drop_is_never_dropped(tmp_path):
    assert metrics.dropped(tmp_path / "missing.log") == (0, 0.0)
    log = tmp_path / "quiet.log"
    log.write_text("2026-11-28 08:40:00.001 P00   INFO: pushed WAL file '000000010000000000000001' to the archive\n")
    assert metrics.dropped(log) == (0, 0.0)

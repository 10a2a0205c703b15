"""Benchmark (not a test): how long a fresh backend takes to answer its first ``/setup``, against Label Studio's 3 s.

Label Studio's Connect Model (Settings → Model) calls ``/setup`` and gives it 3 s (``ML_TIMEOUT_SETUP``); the first
request a fresh gunicorn worker gets builds the project's model while the worker warms up beside it. This starts a
backend of 2 workers and sends ``--requests`` ``/setup``s of new projects (a Choices over Text) one after the other,
``--runs`` times each way, and prints the seconds of each:

- **one host** (the baseline: ``MODEL_DIR`` only);
- **Redis**: ``LABELHUB_REDIS_URL`` with ``LABELHUB_AUTO_PREDICT`` and a ``labelhub worker`` starting beside it
  (:func:`tests.backend_fixtures.auto_predict_on_redis`, against a Label Studio of :mod:`tests.labelstudio`),

then the ratio of the first ``/setup`` on Redis to the first on one host (the machine's load cancels out in a ratio,
not in a time). Measured 2026-12-06 on 2 idle cores: one host 0.42 to 0.60 s, Redis 0.94 to 1.11 s (then 0.01 to
0.15 s): a ratio of 1.8 to 2.2; under the test suite's load (three xdist workers) about three times more, at Label
Studio's 3 s (one CI run in five timed out there).

Run: ``python bench/cold_setup_bench.py [--runs 2] [--requests 4]`` (about 2 minutes).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.backend_fixtures import (BackendServer, RedisServer, TEXT_CONFIG, auto_predict_on_redis,  # noqa: E402
                                    project_key)
from tests.labelstudio import LabelStudioServer  # noqa: E402


def setups(url: str, n: int) -> list[float]:
    """Seconds of ``n`` ``/setup`` requests of new projects, one after the other."""
    times = []
    for _ in range(n):
        started = time.monotonic()
        answer = requests.post(url + "/setup", json={"project": project_key(), "schema": TEXT_CONFIG}, timeout=60)
        answer.raise_for_status()
        times.append(time.monotonic() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=4)
    args = parser.parse_args()
    firsts: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with LabelStudioServer(folder / "ls") as label_studio, RedisServer(folder / "redis") as redis_server:
            for run in range(args.runs):
                for imports, env in (("workers import", {"LABELHUB_TEST_NO_PREIMPORT": "1"}), ("master imports", {})):
                    with BackendServer(folder / f"host{run}{bool(env)}", workers=2, threads=4, env=env) as backend:
                        times = setups(backend.url, args.requests)
                    firsts.setdefault(("one host", imports), []).append(times[0])
                    print(f"one host, {imports}, run {run}: " + ", ".join(f"{t:.2f}" for t in times) + " s", flush=True)
                    db = f"{redis_server.url}/{2 * run + bool(env)}"
                    with auto_predict_on_redis(label_studio, db, folder / f"redis{run}{bool(env)}",
                                               backend_env=env) as backend:
                        times = setups(backend.url, args.requests)
                    firsts.setdefault(("redis", imports), []).append(times[0])
                    print(f"redis, {imports}, run {run}: " + ", ".join(f"{t:.2f}" for t in times) + " s", flush=True)
    for where in ("one host", "redis"):
        before, after = (statistics.median(firsts[(where, imports)]) for imports in ("workers import", "master imports"))
        print(f"{where}: first /setup, median of {args.runs}: {before:.2f} s when each worker imports its modules, "
              f"{after:.2f} s when the master does (ratio {before / after:.1f}; Label Studio waits 3 s)")


if __name__ == "__main__":
    main()

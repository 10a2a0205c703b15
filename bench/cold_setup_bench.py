"""Benchmark (not a test): how long a fresh backend takes to answer its first ``/setup``, against Label Studio's 3 s.

Label Studio's Connect Model (Settings → Model) calls ``/setup`` and gives it 3 s (``ML_TIMEOUT_SETUP``); the first
request a fresh gunicorn worker gets builds the project's model while the worker warms up beside it. This starts a
backend of 2 workers and sends ``--requests`` ``/setup``s of new projects (a Choices over Text) one after the other,
``--runs`` times each way, and prints the seconds of each:

- **one host** (``MODEL_DIR`` only) and **Redis** (``LABELHUB_REDIS_URL`` with ``LABELHUB_AUTO_PREDICT`` and a
  ``labelhub worker`` starting beside it: :func:`tests.backend_fixtures.auto_predict_on_redis`, against a Label Studio
  of :mod:`tests.labelstudio`);
- each with **workers import** (the baseline: each worker imports label-studio-sdk and scikit-learn itself, in its
  first requests, as before 2026-12-06 and as ``gunicorn 'labelhub.backend.app:create_app()'`` run by hand does;
  ``LABELHUB_TEST_NO_PREIMPORT=1``, :mod:`tests.guarded`) and **master imports** (``labelhub backend``: gunicorn's
  master imports them before it forks, :func:`labelhub.backend.startup.preimport`),

then, for each, the ratio of the first ``/setup`` with the workers importing to the first with the master importing
(the machine's load cancels out in a ratio, not in a time). Measured 2026-12-06 on 2 cores busy with a test suite
and two other processes (the suite's load, where one run in five had missed the 3 s): one host 0.70 and 0.94 s
against 0.13 and 0.10 s (ratio 7.0), Redis 3.96 and 3.71 s against 0.72 and 0.44 s (ratio 6.6); on 2 idle cores,
one host 0.50 and 0.40 s against 0.03 and 0.03 s (ratio 16), Redis 0.84 and 1.09 s against 0.02 and 0.02 s (ratio
51).

Run: ``python bench/cold_setup_bench.py [--runs 2] [--requests 4]`` (about 4 minutes).
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

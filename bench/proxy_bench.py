"""Benchmark of the backend's file route (not a test): ``python bench/proxy_bench.py [--files 1000]``.

Starts the Hub test server with ``--files`` real Fashion-MNIST PNGs in a **private** dataset (reads
need the token), the same files in a local git repository, and ``labelhub backend`` under gunicorn
serving both (``LABELHUB_FILE_REPOS``), with its own empty huggingface_hub cache (``HF_HOME``). Then it
fetches every file's signed URL with ``--clients`` concurrent plain HTTP clients, as browsers would,
and prints files/s, MB/s and latency percentiles for:

- proxy, cold: each file is downloaded from the Hub into the cache by the backend, then answered;
- proxy, cached: the same URLs again (no Hub call: counted);
- direct from huggingface_hub's cache, in this process, same files, same cache: ``hf_hub_download``
  (a cache hit at a commit sha makes no call) then reading the bytes, with the same number of threads;
  and plain ``open().read()`` of the cached paths (the floor);
- proxy from the local git repository (read in-process with dulwich: :class:`labelhub.repos.git.GitObjects`).

Every answer is checked byte for byte against the file committed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.labelstudio import free_port  # noqa: E402

HUB_PORT = free_port()
HUB_TOKEN = "hf_labelhubBenchToken0000000000000000"
SECRET = "labelhub-bench-secret-0123456789"
WORK = Path(tempfile.mkdtemp(prefix="labelhub-proxy-bench-"))
os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{HUB_PORT}", HF_HOME=str(WORK / "hf"), HF_HUB_DISABLE_XET="1",
                  HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1")
os.environ.pop("HF_HUB_CACHE", None)

import requests  # noqa: E402
from huggingface_hub import hf_hub_download  # noqa: E402

from labelhub.signing import repo_key, sign_url  # noqa: E402
from tests import sample_repos  # noqa: E402
from tests.backend_fixtures import BackendServer  # noqa: E402
from tests.hubserver import HubServer  # noqa: E402


def timed(fn, items, clients: int) -> tuple[float, list[float], int]:
    """Run ``fn(item)`` over ``items`` with ``clients`` threads: ``(wall seconds, latencies, bytes)``."""
    def one(item):
        started = time.perf_counter()
        size = fn(item)
        return time.perf_counter() - started, size

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, items))
    return time.perf_counter() - started, [r[0] for r in results], sum(r[1] for r in results)


def report(name: str, wall: float, latencies: list[float], size: int, baseline: float | None = None) -> float:
    """Print one line; return files/s."""
    rate = len(latencies) / wall
    q = statistics.quantiles(latencies, n=100)
    ratio = f"  ({baseline / rate:5.1f}x slower than the faster direct read)" if baseline else ""
    print(f"{name:<44} {rate:8.0f} files/s {size / wall / 1e6:7.1f} MB/s   p50 {q[49] * 1e3:6.2f} ms"
          f"  p95 {q[94] * 1e3:6.2f} ms{ratio}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="images in the repo")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (and threads of the direct read)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the backend")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    args = parser.parse_args()

    files = sample_repos.image_files(0, args.files)
    paths = sorted(files)
    total_mb = sum(map(len, files.values())) / 1e6
    with HubServer(root=WORK / "hub", port=HUB_PORT, token=HUB_TOKEN) as hub:
        repo_id = "bench/private-fmnist"
        hub.create_repo(repo_id, private=True)
        sha = hub.commit_files(repo_id, files, message="images")
        local = WORK / "shelf"
        sample_repos.init_local_repo(local)
        local_sha = sample_repos.commit_local(local, files, message="images")
        env = {"HF_TOKEN": HUB_TOKEN, "LABELHUB_SECRET": SECRET, "LABELHUB_FILE_REPOS": f"{repo_id},{local}",
               "LABELHUB_LOG_LEVEL": "WARNING", "LABELHUB_TRAINER": "false"}
        print(f"{args.files} Fashion-MNIST PNGs ({total_mb:.1f} MB), private Hub test server + local git repo; "
              f"backend: gunicorn {args.workers} workers x {args.threads} threads; {args.clients} clients")
        with BackendServer(WORK / "backend", workers=args.workers, threads=args.threads, env=env) as backend:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=args.clients, pool_maxsize=args.clients)
            session.mount("http://", adapter)

            def proxy(key, commit):
                def get(path):
                    answer = session.get(sign_url(backend.url, SECRET, key, commit, path), timeout=60)
                    assert answer.status_code == 200 and answer.content == files[path], (answer.status_code, path)
                    return len(answer.content)
                return get

            def direct(path):
                local_path = hf_hub_download(repo_id, path, repo_type="dataset", revision=sha, token=HUB_TOKEN)
                with open(local_path, "rb") as fh:
                    data = fh.read()
                assert data == files[path]
                return len(data)

            hub.reset_calls()
            cold = timed(proxy(repo_key(repo_id), sha), paths, args.clients)
            cold_calls = hub.count_calls(path="/resolve/")
            hub.reset_calls()
            cached = timed(proxy(repo_key(repo_id), sha), paths, args.clients)
            cached_calls = hub.count_calls()
            direct_run = timed(direct, paths, args.clients)
            direct_seq = timed(direct, paths, 1)
            cache_paths = {p: hf_hub_download(repo_id, p, repo_type="dataset", revision=sha, token=HUB_TOKEN)
                           for p in paths}
            raw = timed(lambda p: len(Path(cache_paths[p]).read_bytes()), paths, args.clients)
            direct_calls = hub.count_calls()
            local_cold = timed(proxy(local.name, local_sha), paths, args.clients)
            local_warm = timed(proxy(local.name, local_sha), paths, args.clients)

        base = max(report(f"direct: hf_hub_download + read, {args.clients} threads", *direct_run),
                   report("direct: hf_hub_download + read, 1 thread", *direct_seq))
        report(f"direct: open().read() of cached paths, {args.clients} thr", *raw)
        report("proxy, cold (Hub download into the cache)", *cold, baseline=base)
        report("proxy, cached", *cached, baseline=base)
        report("proxy, local git repo (first pass)", *local_cold, baseline=base)
        report("proxy, local git repo (second pass)", *local_warm, baseline=base)
        print(f"Hub /resolve/ calls: cold proxy pass {cold_calls}, cached proxy pass {cached_calls} (all calls), "
              f"direct reads {direct_calls} (all calls)")


if __name__ == "__main__":
    main()

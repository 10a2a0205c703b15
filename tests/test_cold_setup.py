"""A fresh gunicorn worker answers Connect Model's first ``/setup`` without importing label-studio-sdk or scikit-learn,
nor do its trainer and project check beside it: ``labelhub backend`` imports them once in gunicorn's master
(:func:`labelhub.backend.startup.preimport`), since Label Studio gives ``/setup`` 3 s and a cold worker on Redis,
importing them beside its trainer, missed that once in five test runs. ``python bench/cold_setup_bench.py`` measures
the time it saves."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.backend_fixtures import IMAGE_CONFIG, ROOT, TEXT_CONFIG
from tests.test_ship_examples_regions import BOX_CONFIG, SPAN_CONFIG
from tests.test_transcription_head import PAGE_CONFIG

#: Run in a fresh interpreter: what a forked worker inherits, then the first /setup of each kind of project.
_FRESH_WORKER = """
import json, sys, threading
from labelhub.backend.startup import preimport
preimport()
started_threads = threading.active_count()
from labelhub.backend.app import create_app
app = create_app({"model_dir": sys.argv[2], "start_trainer": False, "warmup": False})
client = app.test_client()
client.get("/health")
before = set(sys.modules)
statuses = [client.post("/setup", json={"project": f"{n}.1700000000", "schema": config}).status_code
            for n, config in enumerate(json.loads(sys.argv[1]), start=1)]
from label_studio_sdk import LabelStudio  # what the trainer and the project check import in their threads
from label_studio_sdk.core.api_error import ApiError
print(json.dumps({"threads": started_threads, "statuses": statuses,
                  "imported": sorted(m for m in set(sys.modules) - before if not m.startswith("labelhub."))}))
"""


def test_after_the_masters_imports_a_first_setup_imports_nothing_but_labelhub_and_preimport_starts_no_thread(tmp_path):
    configs = [IMAGE_CONFIG, TEXT_CONFIG, BOX_CONFIG, SPAN_CONFIG, PAGE_CONFIG]
    out = subprocess.run([sys.executable, "-c", _FRESH_WORKER, json.dumps(configs), str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["statuses"] == [200] * len(configs)
    assert seen["threads"] == 1  # a forked worker would not have a thread the master started
    assert seen["imported"] == [], "imported inside the first /setup; add them to startup.PREIMPORTS"

"""The scripts of ``examples/`` run against a repo with real exported versions.

Real Fashion-MNIST images in a local git repo and in a Hub repo (the Hub test server), made into
tasks of a real Label Studio project by ``labelhub sync``, annotated through Label Studio's API,
exported twice (``annotations-v1``, then ``annotations-v2`` after one update, one deletion and one
new annotation).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from labelhub.sync.demo.command import LABEL_CONFIG
from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist
from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub

ROOT = Path(__file__).resolve().parent.parent
N = 12


def choice(label):
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture(scope="module", params=["local", "hub"])
def versions(request, label_studio, tmp_path_factory):
    """``(repo argument, {annotation_id: label} of v1, of v2, (added, changed, removed) ids)``."""
    tmp = tmp_path_factory.mktemp(f"examples-{request.param}")
    files = sample_repos.image_files(0, N)
    if request.param == "local":
        repo = tmp / "fmnist"
        sample_repos.init_local_repo(repo)
        sample_repos.commit_local(repo, files, message="images")
        repo_arg = str(repo)
    else:
        hub = request.getfixturevalue("hub_server")
        repo_arg = f"labelhub/examples-{time.monotonic_ns() % 10**9}"
        hub.create_repo(repo_arg)
        hub.commit_files(repo_arg, files, message="images")
    client = label_studio.client()
    project = client.projects.create(title=f"examples {request.param}", label_config=LABEL_CONFIG)

    def sync_once():
        invoke_labelhub("sync", "--repo", repo_arg, "--project", str(project.id), "--state",
                        str(tmp / "state.sqlite3"), "--once", check=True,
                        env={"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
                             "HF_TOKEN": HUB_TOKEN})

    sync_once()
    _, y = fashion_mnist("test", N)
    truth = {sample_repos.image_path(i): FASHION_MNIST_CLASSES[int(y[i])] for i in range(N)}
    tasks = {t.data["hf_path"]: t.id for t in client.tasks.list(project=project.id, page_size=100)}
    v1 = {}
    for path in list(truth)[:8]:
        v1[client.annotations.create(tasks[path], result=choice(truth[path])).id] = truth[path]
    sync_once()
    ids = list(v1)
    v2 = dict(v1)
    client.annotations.update(ids[0], result=choice("Bag"))
    v2[ids[0]] = "Bag"
    client.annotations.delete(ids[1])
    del v2[ids[1]]
    path = list(truth)[9]
    new = client.annotations.create(tasks[path], result=choice(truth[path])).id
    v2[new] = truth[path]
    sync_once()
    yield repo_arg, v1, v2, ([new], [ids[0]], [ids[1]])
    client.projects.delete(project.id)


def run_example(name: str, *args: str) -> str:
    env = {**os.environ, "HF_TOKEN": HUB_TOKEN, "HF_DATASETS_CACHE": os.environ.get("HF_DATASETS_CACHE", ""),
           "TQDM_DISABLE": "1"}
    env = {k: v for k, v in env.items() if v}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          env=env, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


def test_load_version_example_loads_each_tag_with_datasets(versions):
    repo, v1, v2, _ = versions
    out = run_example("load_version.py", repo, "annotations-v2")
    assert f"annotations-v2: {len(v2)} annotations of {len(v2)} tasks by 1 annotator" in out
    for label, count in Counter(v2.values()).items():
        assert f"  {label}\t{count}" in out
    assert f"annotations-v1: {len(v1)} annotations" in run_example("load_version.py", repo, "annotations-v1")


def test_torch_dataloader_example_streams_only_rows_of_one_label_with_decoded_images(versions):
    repo, _, v2, _ = versions
    label, count = Counter(v2.values()).most_common(1)[0]
    out = run_example("torch_dataloader.py", repo, "annotations-v2", "--label", label, "--batch-size", "2")
    assert out.strip().endswith(f"{count} images")
    batches = [line for line in out.splitlines() if line.startswith("batch:")]
    assert len(batches) == (count + 1) // 2
    assert "pixels (2, 1, 28, 28) torch.float32" in batches[0] or count == 1
    assert all(f"'{label}'" in line and all(f"'{o}'" not in line for o in set(v2.values()) - {label})
               for line in batches)
    none = run_example("torch_dataloader.py", repo, "annotations-v2", "--annotator", "nobody@example.com")
    assert none.strip() == "0 images"


def test_diff_versions_example_shows_added_changed_and_removed_annotations(versions):
    repo, _, _, (added, changed, removed) = versions
    out = run_example("diff_versions.py", repo, "annotations-v1", "annotations-v2")
    assert out.splitlines()[0] == "annotations-v1 -> annotations-v2: +1 ~1 -1"
    assert f"  + {added[0]} " in out and f"  - {removed[0]} " in out
    assert f"  ~ {changed[0]} " in out and "-> Bag" in out


def test_train_classifier_example_trains_from_the_typed_rows_in_a_few_lines(versions):
    repo, _, v2, _ = versions
    out = run_example("train_classifier.py", repo, "annotations-v2")
    classes = sorted(set(v2.values()))
    assert out.startswith(f"annotations-v2: {len(v2)} images, {len(classes)} classes ({', '.join(classes)});"), out
    assert "accuracy" in out


def test_the_examples_load_the_configs_of_the_tags_series():
    """A test project exporting into the same repo tags test-vN and owns the configs test and test-rows: loading
    test-v1 with the default config read the other project's rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    try:
        from _repo import series_configs
    finally:
        sys.path.pop(0)
    assert series_configs("annotations-v3") == (None, "rows")
    assert series_configs("test-v1") == ("test", "test-rows")
    assert series_configs("my-set-v12") == ("my-set", "my-set-rows")


def test_train_classifier_skips_and_names_a_file_that_is_no_image(capsys):
    """The sync makes a task of any file the label config's type takes: an empty ``.png`` or a text under that name
    was annotated and exported, and the example ended in ``UnidentifiedImageError``. Its rows are skipped and
    named."""
    import datasets

    from tests.sample_repos import image_files

    png = next(iter(image_files(0, 1).values()))
    rows = datasets.Dataset.from_dict({"image": [{"bytes": png, "path": None}, {"bytes": b"", "path": "empty.png"},
                                                 {"bytes": b"not an image", "path": "text.png"}],
                                       "hf_path": ["a.png", "empty.png", "text.png"]})
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from train_classifier import pixels
    finally:
        sys.path.pop(0)
    x, kept = pixels(rows.cast_column("image", datasets.Image()), "image")
    assert kept == [0] and x.shape == (1, 28 * 28)
    assert "skipped 2 rows whose file is no image: empty.png, text.png" in capsys.readouterr().out

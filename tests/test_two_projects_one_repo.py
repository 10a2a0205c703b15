"""Two Label Studio projects, one dataset repo: two ``labelhub sync`` daemons export a project each into the same
repo at the same time (:mod:`labelhub.sync.versions.series`).

The daemons run side by side (one state file, as two daemons started in one folder share the default one), each
importing its own folder of real images and exporting with its own ``--csv-path``. Several rounds of annotations
(added, relabelled, deleted) are made in both projects at once, so their exports interleave: from the second round on
one of them commits on a stale head and gets the Hub's 412 (or, in a local repository, a failed compare-and-swap of
the branch) and rebuilds its commit on the other's. The Hub variant exports ``annotations/train.csv`` and
``annotations/test.csv`` (series ``train`` and ``test``); the local one ``annotations/annotations.csv`` (the default
series, ``annotations-vN``, configs ``default``...) and ``annotations/test.csv``.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pandas as pd
import pytest
from huggingface_hub import DatasetCard
from labelhub.sync.versions.card import dataset_card
from labelhub.sync.versions.series import series_for

from tests import sample_repos
from tests.conftest import FILE_SECRET, HUB_TOKEN, ROOT
from tests.in_process import invoke_labelhub
from tests.test_sync_export import HubRepo, LocalRepo

KINDS = ["Top", "Trouser", "Bag"]
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          + "".join(f'<Choice value="{k}"/>' for k in KINDS) + "</Choices></View>")
N = 8
#: Each project's images: the first N of a volume (``fmnist/vol-000/...`` and ``fmnist/vol-001/...``).
IMAGES = {"first": range(N), "second": range(10, 10 + N)}
CSV_PATHS = {"hub": {"first": "annotations/train.csv", "second": "annotations/test.csv"},
             "local": {"first": "annotations/annotations.csv", "second": "annotations/test.csv"}}
ROUNDS = 3


@pytest.fixture(params=["hub", "local"])
def repo(request, tmp_path):
    files = {**sample_repos.image_files(0, N), **sample_repos.image_files(10, 10 + N)}
    if request.param == "local":
        return LocalRepo(sample_repos.local_repo_with(tmp_path / "repo", files))
    hub = request.getfixturevalue("hub")
    return HubRepo(hub, sample_repos.hub_repo_with(hub, f"labelhub/two-{uuid.uuid4().hex[:10]}", files))


def choice(kind):
    return [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [kind]}}]


class Daemon:
    """One ``labelhub sync`` daemon (a subprocess with the loopback guard), its log in a file."""

    def __init__(self, repo, project_id, csv_path, include, state, log_path, env, *extra):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.guarded", "sync", "--repo", repo.arg, "--project", str(project_id),
             "--state", str(state), "--include", include, "--csv-path", csv_path, "--interval", "1",
             "--reconcile-interval", "1", "--export-interval", "0", "--sweep-interval", "3600", *extra],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def text(self) -> str:
        return open(self.log_path).read()

    def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)
        self.log.close()
        return self.process.returncode


def series_tags(repo, prefix) -> list[str]:
    """The tags of one series, oldest first."""
    numbered = sorted((int(m.group(1)), t) for t in repo.tags() if (m := re.fullmatch(rf"{prefix}-v(\d+)", t)))
    return [t for _, t in numbered]


def csv_at(repo, rev, csv_path) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(repo.read(rev, csv_path)), dtype={"annotator": str}, keep_default_na=False)


def _holds(repo, rev, path) -> bool:
    try:
        repo.read(rev, path)
    except Exception:  # EntryNotFound (Hub) or a failed git show (local)
        return False
    return True


def wait_until_exported(repo, series, expected: dict[int, str], daemons, timeout=240) -> str:
    """Wait until the newest tag of ``series`` holds exactly the annotations ``expected`` ({id: kind}); its tag."""
    deadline = time.monotonic() + timeout
    while True:
        tags = series_tags(repo, series.prefix)
        if tags:
            rows = csv_at(repo, tags[-1], series.csv_path)
            if dict(zip(rows["annotation_id"], rows["kind"])) == expected:
                return tags[-1]
        assert all(d.alive() for d in daemons), "\n".join(d.text()[-3000:] for d in daemons)
        assert time.monotonic() < deadline, f"{series.prefix}: {tags} never held {expected}"
        time.sleep(0.5)


def test_two_daemons_export_two_projects_into_one_repo_in_parallel_and_nothing_is_lost(
        label_studio, make_project, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)  # the Hub rows' images are read with the environment's token
    started = time.monotonic()
    client = label_studio.client()
    local = isinstance(repo, LocalRepo)
    csv_paths = CSV_PATHS["local" if local else "hub"]
    series = {name: series_for(csv_paths[name]) for name in IMAGES}
    projects = {name: make_project(f"two projects: {name}", CONFIG) for name in IMAGES}
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "HF_TOKEN": HUB_TOKEN, "TQDM_DISABLE": "1", "LABELHUB_SECRET": FILE_SECRET}
    state = tmp_path / "state.sqlite3"  # one state file for both, as two daemons started in one folder share it
    daemons = {name: Daemon(repo, projects[name].id, csv_paths[name], f"fmnist/vol-{IMAGES[name][0] // 10:03d}/**",
                            state, tmp_path / f"{name}.log", env) for name in IMAGES}
    made: dict[str, dict[int, str]] = {name: {} for name in IMAGES}  # {annotation id: kind}, as in Label Studio
    ever: dict[str, set[int]] = {name: set() for name in IMAGES}
    try:
        deadline = time.monotonic() + 180  # generous: the test machine is shared
        tasks = {}
        for name, project in projects.items():
            while len(tasks.setdefault(name, [])) < N:
                assert time.monotonic() < deadline and daemons[name].alive(), daemons[name].text()[-3000:]
                time.sleep(0.3)
                tasks[name] = sorted((t.data["hf_path"], t.id) for t in client.tasks.list(project=project.id,
                                                                                       page_size=100))
            assert [p for p, _ in tasks[name]] == [sample_repos.image_path(i) for i in IMAGES[name]]
        latest = {}
        for round_ in range(ROUNDS):
            for name in IMAGES:  # both projects at once: their exports race
                ids = [task_id for _, task_id in tasks[name]]
                for i in range(round_ * 3, min(round_ * 3 + 3, N)):
                    kind = KINDS[(i + (name == "second")) % len(KINDS)]
                    annotation = client.annotations.create(ids[i], result=choice(kind))
                    made[name][annotation.id] = kind
                    ever[name].add(annotation.id)
                first = min(made[name])
                if round_ == 1:  # relabel the first annotation
                    client.annotations.update(first, result=choice("Bag"))
                    made[name][first] = "Bag"
                if round_ == 2:  # delete it
                    client.annotations.delete(first)
                    del made[name][first]
            for name in IMAGES:
                latest[name] = wait_until_exported(repo, series[name], made[name], daemons.values())
    finally:
        codes = {name: daemon.stop() for name, daemon in daemons.items()}
    logs = {name: daemon.text() for name, daemon in daemons.items()}
    assert codes == {name: 0 for name in IMAGES}, logs
    # the exports interleaved: a version built on the other daemon's commit (a 412 and a rebuild, or on the head its
    # poll saw) holds the other project's CSV too
    rebuilt = sum(text.count("moved: rebuilding the export") for text in logs.values())
    on_other = sum(_holds(repo, tag, series[other].csv_path)
                   for name, other in (("first", "second"), ("second", "first"))
                   for tag in series_tags(repo, series[name].prefix))
    print(f"{ROUNDS} rounds of two projects exported in {time.monotonic() - started:.1f} s, {on_other} versions "
          f"built on the other daemon's commits ({rebuilt} after a 412)")
    assert on_other >= ROUNDS - 1, logs
    assert "Traceback" not in "".join(logs.values())

    # tags apart: each series numbered 1..n, nothing else tagged, every version holding its own project's rows only
    prefixes = {name: series[name].prefix for name in IMAGES}
    tags = {name: series_tags(repo, prefixes[name]) for name in IMAGES}
    assert sorted(repo.tags()) == sorted(tags["first"] + tags["second"])
    for name in IMAGES:
        assert tags[name] == [f"{prefixes[name]}-v{n}" for n in range(1, len(tags[name]) + 1)]
        assert len(tags[name]) >= ROUNDS and tags[name][-1] == latest[name]
        for tag in tags[name]:
            assert set(csv_at(repo, tag, series[name].csv_path)["annotation_id"]) <= ever[name], (name, tag)

    # every annotation of each project in its own latest version (checked by the waits), manifests apart
    manifests = {name: series[name].manifest_path for name in IMAGES}
    assert len(set(manifests.values())) == 2
    for name in IMAGES:
        manifest = json.loads(repo.read(latest[name], manifests[name]))
        assert manifest["tag"] == latest[name] and manifest["csv_path"] == csv_paths[name]
        assert manifest["label_studio"]["project_id"] == projects[name].id
        assert manifest["counts"]["annotations"] == len(made[name])

    # the card at the head keeps both projects' configs and sections
    head_card = DatasetCard(repo.read(repo.head(), "README.md").decode())
    configs = {c["config_name"] for c in head_card.data.configs}
    for name in IMAGES:
        owned = {series[name].default_config, series[name].consensus_config} | (
            set() if local else {series[name].rows_config})
        assert owned <= configs, (name, configs)
        begin, end = series[name].markers
        assert head_card.text.count(begin) == 1 and head_card.text.count(end) == 1
        assert f"## Annotations ({latest[name]})" in head_card.text  # the head was built on the other's newest

    # datasets.load_dataset of each project's config at its tag gives that project's rows
    for name in IMAGES:
        loaded = repo.load(latest[name], tmp_path, name=series[name].default_config, pandas=False)
        feature = loaded.features["kind"]
        got = {row["annotation_id"]: feature.int2str(row["kind"]) if hasattr(feature, "int2str") else row["kind"]
               for row in loaded}
        assert got == made[name], name
        assert {row["hf_path"] for row in loaded} <= {sample_repos.image_path(i) for i in IMAGES[name]}

    # labelhub versions and diff read one series with its --csv-path; a tag of another series is refused
    hf = {"HF_TOKEN": HUB_TOKEN}
    second = series["second"]
    listed = invoke_labelhub("versions", "--repo", repo.arg, "--csv-path", second.csv_path, env=hf, check=True).stdout
    assert [line.split()[0] for line in listed.splitlines()] == tags["second"]
    shown = invoke_labelhub("diff", "--repo", repo.arg, tags["second"][0], tags["second"][-1], "--csv-path",
                            second.csv_path, "--json", env=hf, check=True).stdout
    assert json.loads(shown)["new"] == tags["second"][-1]
    wrong = invoke_labelhub("diff", "--repo", repo.arg, tags["second"][0], tags["second"][-1], env=hf)
    assert wrong.returncode == 1 and "--csv-path" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def test_a_second_project_with_the_same_tag_prefix_is_refused_and_a_new_prefix_starts_a_new_series(
        label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 4))
    client = label_studio.client()
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    runs, tasks = {}, {}
    for name, extra in (("owner", ("--csv-path", "annotations/test.csv")),
                        ("intruder", ("--csv-path", "annotations/other.csv", "--tag-prefix", "test"))):
        project = make_project(f"same prefix: {name}", CONFIG)
        runs[name] = ("sync", "--repo", str(path), "--project", str(project.id), "--state",
                      str(tmp_path / f"{name}.sqlite3"), "--once", *extra)
        runs[name + " start"] = invoke_labelhub(*runs[name], env=env)
        tasks[name] = [t.id for t in client.tasks.list(project=project.id, page_size=10)]
        if tasks[name]:
            client.annotations.create(tasks[name][0], result=choice("Bag"))
        runs[name + " result"] = invoke_labelhub(*runs[name], env=env)
    owner, intruder = runs["owner result"], runs["intruder result"]
    assert runs["owner start"].returncode == 0 and owner.returncode == 0, owner.stderr
    assert sample_repos.git(path, "tag", "--list").split() == ["test-v1"]
    # refused as it starts, before importing anything (the owner's test-v1 is in the repo already)
    assert runs["intruder start"].returncode == 1 and tasks["intruder"] == []
    assert intruder.returncode == 1 and "another project exports with the tag prefix 'test'" in intruder.stderr
    assert "Traceback" not in intruder.stderr and "annotations/test.csv" in intruder.stderr

    # the owner renames its series: its versions start again from v1, every annotation counted as added
    client.annotations.create(tasks["owner"][1], result=choice("Top"))
    renamed = invoke_labelhub(*runs["owner"], "--tag-prefix", "renamed", env=env, check=True)
    assert "the tag prefix changed from 'test' to 'renamed'" in renamed.stderr
    assert sorted(sample_repos.git(path, "tag", "--list").split()) == ["renamed-v1", "test-v1"]
    manifest = json.loads(sample_repos.git(path, "show", "renamed-v1:annotations/renamed.manifest.json"))
    assert (manifest["parent_version"], manifest["counts"]["annotations"], manifest["counts"]["added"]) == (None, 2, 2)


def test_each_series_writes_its_own_paths_and_card_entries():
    default, test = series_for(), series_for("annotations/test.csv")
    assert (default.tag(2), default.manifest_path, default.hub_training_path, default.rows_path) == (
        "annotations-v2", "annotations/manifest.json", "annotations/train.jsonl", "annotations/annotations.jsonl")
    assert (test.tag(2), test.manifest_path, test.hub_training_path, test.rows_path, test.local_metadata_path) == (
        "test-v2", "annotations/test.manifest.json", "annotations/test.train.jsonl", "annotations/test.rows.jsonl",
        "test.metadata.jsonl")
    assert series_for("test/annotations.csv").prefix == "test" and series_for("train.csv", "mine").tag(1) == "mine-v1"
    for bad in (("annotations/rows.csv", None), ("annotations/a.csv", "x.y"), ("annotations/a.csv", "a-consensus")):
        with pytest.raises(ValueError):
            series_for(*bad)
    with pytest.raises(ValueError, match="version of the series .test."):
        series_for().check_tag("test-v1")
    series_for().check_tag("release-1")  # not shaped like a version: allowed

    card = None
    for s in (default, test, default):  # each export keeps the other series' configs and section
        block = f"{s.markers[0]}\n{s.tag(1)}\n{s.markers[1]}"
        card = dataset_card(card, s.csv_path, block, [s.hub_training_path], rows_path=s.rows_path,
                            consensus_files=[s.hub_consensus_path], series=s)
    parsed = DatasetCard(card)
    assert [c["config_name"] for c in parsed.data.configs] == ["default", "rows", "consensus", "test", "test-rows",
                                                                "test-consensus"]
    assert parsed.text.count("annotations-v1") == 1 and parsed.text.count("test-v1") == 1


@pytest.mark.parametrize("earlier", [None, "---\nlicense: mit\n---\n# Our data\n\nText.\n", "# No YAML\n",
                                     "---\nconfigs:\n- config_name: other\n  data_files: x.csv\n---\nA\r\nB\r\n"])
def test_a_card_made_from_the_cached_yaml_equals_one_made_by_datasetcard(earlier):
    """:func:`dataset_card` parses and writes the YAML once per earlier card (its section aside) and arguments; the
    cards of successive versions equal those ``DatasetCard`` makes for each of them."""
    from labelhub.sync.versions import card as cards

    for s in (series_for(), series_for("annotations/test.csv")):
        card = earlier
        for version in range(1, 4):
            block = f"{s.markers[0]}\n{s.tag(version)}: {uuid.uuid4().hex}\n{s.markers[1]}"
            made = dataset_card(card, s.csv_path, block, [s.hub_training_path], rows_path=s.rows_path, series=s,
                                version=f"LabelHub {s.tag(version)}, export x{version}")
            assert made == cards._made_card(card, s.csv_path, block, [s.hub_training_path], None, s.rows_path, None,
                                            None, None, s, None).replace(cards._VERSION,
                                                                         f'"LabelHub {s.tag(version)}, export x{version}"')
            assert f'description: "LabelHub {s.tag(version)}, export x{version}"' in made
            card = made

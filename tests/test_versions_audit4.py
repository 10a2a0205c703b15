"""A version as training data, fixes of an audit of versions (2026-12, the fourth): a local repository's rows of a
file changed after its annotation, its CSV read as strings, and the examples on a version without boxes or spans,
or with a file that is no image.

The configs are built from a real sync state with the exporter's functions (as ``tests/test_versions_incremental.py``
does); the examples run on local repositories made by hand with a version's files (as
``tests/test_versions_review.py`` does): no servers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from labelhub.label_config import control_tags, data_field
from labelhub.sync.state import SyncState
from labelhub.sync.versions.card import card_block
from labelhub.sync.versions.incremental import build_files, build_rows
from labelhub.sync.versions.training import on_current_content, training_records
from tests import sample_repos
from tests.test_versions_incremental import assert_same_as_from_scratch, image_annotation

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW, PARENT = "a" * 40, "b" * 40, "c" * 40
CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image"><Choice value="a"/><Choice value="b"/><Choice value="c"/></Choices>'
          '</View>')


def local_task(task: int, sha: str) -> dict:
    """A task of a local repository's file at commit ``sha``, as the sync makes it (the backend's signed URL)."""
    return {"image": f"http://127.0.0.1:9090/files/images/{sha}/img/{task}.png?sig=x", "hf_path": f"img/{task}.png",
            "hf_repo": "/srv/images", "hf_revision": sha}


def changed_after_its_annotation(tmp_path) -> SyncState:
    """Task 1's file changed after two annotators labelled it ``a`` (the task follows the new content, commit
    ``NEW``); task 2's did not. A third annotator labelled task 1's new content ``c``."""
    state = SyncState(tmp_path / "state.sqlite3", 7, "/srv/images")
    state.set_users({1: "ann@example.com", 2: "bob@example.com", 3: "cy@example.com"})
    state.upsert_task(1, local_task(1, OLD))
    state.apply_annotations(1, [image_annotation(11, 1), image_annotation(12, 2)], complete=False, revision=OLD)
    state.upsert_task(2, local_task(2, OLD))
    state.apply_annotations(2, [image_annotation(21, 1, choices=("b",))], complete=False, revision=OLD)
    state.upsert_task(1, local_task(1, NEW))  # the file changed: the task shows the new content
    state.apply_annotations(1, [image_annotation(13, 3, choices=("c",))], complete=False, revision=NEW)
    return state


def lines(blob: bytes) -> list[dict]:
    return [json.loads(line) for line in blob.decode().splitlines()]


def test_a_local_image_row_annotated_before_its_file_changed_is_left_out_of_the_training_and_consensus_configs(
        tmp_path):
    """``imagefolder`` reads a clone's file as the tag holds it: the default config paired the labels made on the old
    image with the new pixels. Those rows stay in the CSV only, and do not vote in the consensus (whose row is the
    file the tag holds); a Hub repo's rows name the file at their ``annotated_revision`` and are kept."""
    state = changed_after_its_annotation(tmp_path)
    controls, field = control_tags(CONFIG), data_field(CONFIG)
    frame = build_rows(state, controls, field.value_key).frame
    assert sorted(frame["annotation_id"]) == [11, 12, 13, 21]  # the CSV keeps every annotation

    files = build_files(state, frame, CONFIG, controls, field, "/srv/images", True, PARENT)
    training = lines(files.training)
    assert sorted((r["annotation_id"], r["file_name"], r["kind"]) for r in training) == [
        (13, "img/1.png", "c"), (21, "img/2.png", "b")]
    consensus = {r["task_id"]: r["kind"] for r in lines(files.consensus)}
    assert consensus == {1: "c", 2: "b"}  # the two "a" made on the old image would have outvoted "c"
    from labelhub.sync.versions.training import media_elsewhere

    assert media_elsewhere(frame.set_index("annotation_id").loc[11].to_dict(), field, True)
    assert not media_elsewhere(frame.set_index("annotation_id").loc[11].to_dict(), field, False)
    assert list(on_current_content(frame, field)) == [a != 11 and a != 12 for a in frame["annotation_id"]]

    hub = training_records(frame, CONFIG, controls, field, "owner/images", False)
    assert {r["annotation_id"]: r["image"] for r in hub}[11] == f"hf://datasets/owner/images@{OLD}/img/1.png"

    # an incremental build leaves them out as a build from scratch does, after another annotation too
    assert_same_as_from_scratch(state, tmp_path, CONFIG, local=True)
    state.apply_annotations(2, [image_annotation(22, 2, choices=("b",))], complete=False, revision=OLD)
    built = assert_same_as_from_scratch(state, tmp_path, CONFIG, local=True)
    assert 11 not in {r["annotation_id"] for r in lines(build_files(
        state, built.frame, CONFIG, controls, field, "/srv/images", True, PARENT).training)}


CSV_V1 = ("task_id,annotation_id,hf_path,image,label,annotator,was_cancelled,ground_truth,lead_time,updated_at,note\n"
          "1,10,a.png,u/a,1,x@y,False,False,1.0,t1,NA\n2,20,b.png,u/b,,x@y,True,False,1.0,t1,\n")
CSV_V2 = ("task_id,annotation_id,hf_path,image,label,annotator,was_cancelled,ground_truth,lead_time,updated_at,note\n"
          "1,10,a.png,u/a,1,x@y,False,False,1.0,t1,NA\n2,20,b.png,u/b,2,x@y,False,False,1.0,t1,\n"
          "3,30,c.png,u/c,None,x@y,False,False,1.0,t1,null\n")


def run_example(name: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          timeout=180, cwd=ROOT, env=env)


def test_a_local_versions_csv_is_read_as_the_strings_it_holds_and_diffs_without_false_changes(tmp_path):
    """``load_dataset("csv", ...)`` made the labels ``None``/``NA``/``null`` missing, and ``1`` a float64 in a version
    with an empty cell, an int64 in the next: ``examples/diff_versions.py`` said ``label: 1.0 -> 1`` and printed
    ``nan``."""
    repo = sample_repos.local_repo_with(tmp_path / "repo", {"annotations/annotations.csv": CSV_V1.encode()})
    sample_repos.git(repo, "tag", "annotations-v1")
    sample_repos.commit_local(repo, {"annotations/annotations.csv": CSV_V2.encode()})
    sample_repos.git(repo, "tag", "annotations-v2")
    out = run_example("diff_versions.py", str(repo), "annotations-v1", "annotations-v2", cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[0] == "annotations-v1 -> annotations-v2: +1 ~1 -0", out.stdout
    assert "  ~ 20 task 2 b.png: label:  -> 2, was_cancelled: True -> False" in out.stdout
    assert "  + 30 task 3 c.png: label=None, was_cancelled=False" in out.stdout
    assert "nan" not in out.stdout and "1.0 -> 1" not in out.stdout

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from _repo import load_version
        rows = load_version(str(repo), "annotations-v2", "rows")
    finally:
        sys.path.pop(0)
    assert {f.dtype for f in rows.features.values()} <= {"string", "large_string"}  # every column (pandas' str)
    assert rows["label"] == ["1", "2", "None"] and rows["note"] == ["NA", "", "null"]


def test_a_local_versions_card_prints_the_csv_recipe_that_reads_strings_and_what_train_leaves_out(tmp_path):
    """The card's local recipe was ``load_dataset("csv", ...)`` (the same guesses); a local Image version's card now
    says that rows annotated before their file changed are not in ``train``, with their count when the manifest
    has one."""
    manifest = {"tag": "annotations-v2", "parent_version": "annotations-v1", "created_at": "2026-12-08T00:00:00Z",
                "label_studio": {"project_id": 1},
                "counts": {"annotations": 3, "tasks": 3, "annotators": 1, "added": 1, "changed": 1, "removed": 0,
                           "older_content": 2},
                "label_distribution": {}}
    block = card_block(manifest, {"label": "Choices"}, "image", local=True, media="Image")
    assert "This version leaves out 2 annotations so." in block and "is left out of `train`" in block
    assert "left out of `train`" not in card_block(manifest, {"label": "Choices"}, "image", repo_id="o/n",
                                                   media="Image")
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    recipe = [line for line in code.splitlines() if line.startswith(("import", "rows ="))]
    assert recipe[-1].startswith("rows = datasets.Dataset.from_pandas(pd.read_csv(")
    (tmp_path / "annotations-v2" / "annotations").mkdir(parents=True)
    (tmp_path / "annotations-v2" / "annotations" / "annotations.csv").write_text(CSV_V2)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec("\n".join(recipe), scope)  # the card's lines, as copied
    finally:
        os.chdir(cwd)
    rows = scope["rows"]
    assert rows["label"] == ["1", "2", "None"] and rows["note"] == ["NA", "", "null"] and rows["lead_time"][0] == "1.0"


def image_version(tmp_path, rows: list[dict], files: dict[str, bytes], manifest: dict | None = None) -> Path:
    """A local repository tagged ``annotations-v1`` holding a version's image files as the export writes them:
    ``metadata.jsonl`` (``imagefolder``), the card's configs, the manifest."""
    card = ("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path:\n    - metadata.jsonl\n"
            "    - img/**\n---\n")
    made = {"README.md": card.encode(), "metadata.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
            **files}
    if manifest is not None:
        made["annotations/manifest.json"] = json.dumps(manifest).encode()
    repo = sample_repos.local_repo_with(tmp_path / "repo", made)
    sample_repos.git(repo, "tag", "annotations-v1")
    return repo


def image_row(n: int, path: str, label: str, **more) -> dict:
    return {"file_name": path, "label": label, **more, "task_id": n, "annotation_id": n, "hf_path": path,
            "annotator": "x@y", "annotated_revision": OLD}


def test_train_classifier_skips_and_names_a_local_file_that_is_no_image_instead_of_crashing(tmp_path):
    """Its filter on the label read whole rows, so ``datasets`` decoded every image first and a ``.png`` that is no
    image ended in ``PIL.UnidentifiedImageError``, before ``pixels()`` could skip and name it."""
    images = list(sample_repos.image_files(0, 4).values())
    files = {f"img/{i}.png": png for i, png in enumerate(images)} | {"img/bad.png": b"not an image"}
    rows = [image_row(i, f"img/{i}.png", "ab"[i % 2]) for i in range(4)] + [image_row(9, "img/bad.png", "a")]
    repo = image_version(tmp_path, rows, files)
    out = run_example("train_classifier.py", str(repo), "annotations-v1", cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "skipped 1 rows whose file is no image: img/bad.png" in out.stdout
    assert "annotations-v1: 4 images, 2 classes (a, b);" in out.stdout


def test_boxes_to_yolo_on_a_local_version_without_boxes_takes_the_manifests_classes(tmp_path):
    """A local version whose rows hold no box yet: ``datasets`` infers the column ``List(Value("null"))``, and
    ``yolo_classes`` failed on it (``'Value' object is not subscriptable``)."""
    images = list(sample_repos.image_files(0, 2).values())
    rows = [image_row(i, f"img/{i}.png", "a", box=[]) for i in range(2)]
    repo = image_version(tmp_path, rows, {f"img/{i}.png": png for i, png in enumerate(images)},
                         {"class_names": {"box": ["cat", "dog"]}})
    out = run_example("boxes_to_yolo.py", str(repo), "annotations-v1", str(tmp_path / "yolo"), "--column", "box",
                      cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "annotations-v1: 2 images (2 without boxes), 0 boxes of 2 classes" in out.stdout
    assert '  0: "cat"\n  1: "dog"\n' in (tmp_path / "yolo" / "data.yaml").read_text()


def test_train_spans_on_a_local_version_without_spans_says_so_in_one_line(tmp_path):
    """Likewise for spans: ``label_names`` called ``.get`` on a ``Value`` (``AttributeError``)."""
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: metadata.jsonl\n---\n"
    rows = [{"text": text, "ner": [], "topic": "a", "task_id": n, "annotation_id": n, "hf_path": f"{n}.txt",
             "annotator": "x@y", "annotated_revision": OLD}
            for n, text in enumerate(["Alice met Bob", "Acme hired Carol"])]
    repo = sample_repos.local_repo_with(tmp_path / "repo", {
        "README.md": card.encode(), "metadata.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode()})
    sample_repos.git(repo, "tag", "annotations-v1")
    out = run_example("train_spans.py", str(repo), "annotations-v1", "--column", "ner", cache=tmp_path / "cache")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "annotations-v1: 2 texts (2 without spans), 6 tokens, 0 entities" in out.stdout
    assert out.stderr.strip() == "one tag only: nothing to learn"


def test_the_label_names_of_a_column_that_is_no_struct_are_the_cells_as_they_are():
    """``examples/_repo.label_names`` on features inferred ``List(Value("null"))`` (no box or span yet)."""
    import datasets

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from _repo import label_names
    finally:
        sys.path.pop(0)
    rows = datasets.Dataset.from_dict({"box": [[], []]})
    assert str(rows.features["box"]) == "List(Value('null'))"
    assert label_names(rows, "box")([]) == ()
    assert label_names(SimpleNamespace(features=rows.features["box"].feature), "label")("PER") == "PER"


def test_the_examples_end_in_one_line_on_a_tag_or_a_column_the_version_does_not_have(tmp_path):
    """A walkthrough of the README: a tag the repository lacks ended in git's ``CalledProcessError`` traceback, and
    ``--column`` left at ``ner`` or ``box`` on a Choices project in ``KeyError`` (``'Value' object is not
    subscriptable`` with a Choices' column)."""
    images = list(sample_repos.image_files(0, 2).values())
    rows = [image_row(i, f"img/{i}.png", "a") for i in range(2)]
    repo = image_version(tmp_path, rows, {f"img/{i}.png": png for i, png in enumerate(images)})
    cache = tmp_path / "cache"
    said = {}
    for name, args in (("load_version.py", ["annotations-v9"]), ("train_spans.py", ["annotations-v1"]),
                       ("boxes_to_yolo.py", ["annotations-v1", str(tmp_path / "yolo"), "--column", "label"])):
        out = run_example(name, str(repo), *args, cache=cache)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        said[name] = out.stderr.strip().splitlines()[-1]
    assert said["load_version.py"] == f"annotations-v9: no such tag in {repo} (its tags: annotations-v1)"
    assert said["train_spans.py"].startswith("annotations-v1: no column 'ner' (its columns: image, label, task_id")
    assert said["boxes_to_yolo.py"] == ("annotations-v1: the column 'label' holds no regions, it is no "
                                        "<RectangleLabels>'s: give --column, the name of a <RectangleLabels> of the "
                                        "label config")

"""What an annotation lead and an ML engineer read of a version: the card's recipe, ``labelhub diff``, ``labelhub
versions`` and the examples (fixes of an audit of versions, 2026-12).

The card and diff texts are pure functions of a manifest and of rows: tested on them directly, as
``tests/test_versions_diff.py`` does; the commands end to end on a local repository.
"""
from __future__ import annotations

import json

import pandas as pd

from labelhub.sync.versions.card import card_block

MANIFEST = {"tag": "annotations-v19", "parent_version": "annotations-v18", "created_at": "2026-12-06T06:31:03+00:00",
            "label_studio": {"project_id": 1},
            "counts": {"annotations": 151, "tasks": 74, "annotators": 4, "added": 8, "changed": 2, "removed": 0},
            "label_distribution": {"label": {"Coat": 23, "Ankle boot": 5}}}


def test_the_cards_recipe_names_the_repo_and_the_consensus_config():
    """The recipe said ``load_dataset("<repo_id>", ...)`` on a Hub repo whose id the export knows, and did not show
    the consensus config the agreement section refers to."""
    block = card_block(MANIFEST, {"label": "Choices"}, "image", agreement="| control |", repo_id="owner/fmnist")
    assert "<repo_id>" not in block
    assert 'datasets.load_dataset("owner/fmnist", revision="annotations-v19", split="train")' in block
    assert 'datasets.load_dataset("owner/fmnist", "rows", revision="annotations-v19", split="train")' in block
    assert 'datasets.load_dataset("owner/fmnist", "consensus", revision="annotations-v19", split="train")' in block
    local = card_block(MANIFEST, {"label": "Choices"}, "image", agreement="| control |", local=True)
    assert 'datasets.load_dataset("./annotations-v19", "consensus", split="train")' in local


HEADER = "task_id,annotation_id,hf_path,image,label,annotator,was_cancelled,ground_truth,lead_time,updated_at\n"
V1 = HEADER + ("1,10,a.png,u/a,Coat,x@y,False,False,1.0,t1\n2,20,b.png,u/b,Coat,x@y,False,False,1.0,t1\n"
               "3,30,c.png,u/c,Bag,x@y,False,False,1.0,t1\n")
# 10 relabelled, 20 marked ground truth, 30 saved again with the same label, 40 added
V2 = HEADER + ("1,10,a.png,u/a,Dress,x@y,False,False,2.0,t2\n2,20,b.png,u/b,Coat,x@y,False,True,1.0,t1\n"
               "3,30,c.png,u/c,Bag,x@y,False,False,5.0,t9\n4,40,d.png,u/d,Pullover,x@y,False,False,1.0,t1\n")


def two_versions(tmp_path):
    from tests import sample_repos

    repo = tmp_path / "repo"
    sample_repos.local_repo_with(repo, {"annotations/annotations.csv": V1.encode()})
    sample_repos.git(repo, "tag", "annotations-v1")
    sample_repos.commit_local(repo, {"annotations/annotations.csv": V2.encode()})
    sample_repos.git(repo, "tag", "annotations-v2")
    return repo


def test_diff_names_the_changed_annotations_and_the_example_counts_as_it_does(tmp_path):
    """``"changed": 2`` with ``1 in other columns only`` named no annotation; ``examples/diff_versions.py`` counted
    only label columns (``~1``) where the title and ``labelhub diff`` said ``~2``."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.in_process import invoke_labelhub

    repo = two_versions(tmp_path)
    data = json.loads(invoke_labelhub("diff", "--repo", str(repo), "annotations-v1", "annotations-v2", "--json",
                                      check=True).stdout)
    assert data["changed"] == 2 and data["reversed"] is False
    assert data["changed_annotations"] == [{"annotation_id": 10, "hf_path": "a.png", "columns": ["label"]},
                                           {"annotation_id": 20, "hf_path": "b.png", "columns": ["ground_truth"]}]
    shown = invoke_labelhub("diff", "--repo", str(repo), "annotations-v1", "annotations-v2", check=True).stdout
    assert "  ~ 10 `a.png`: label\n" in shown and "  ~ 20 `b.png`: ground_truth\n" in shown, shown
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "examples" / "diff_versions.py"), str(repo), "annotations-v1",
                          "annotations-v2"], capture_output=True, text=True, timeout=180, cwd=root,
                         env={**__import__("os").environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[0] == "annotations-v1 -> annotations-v2: +1 ~2 -0", out.stdout
    assert "  ~ 20 task 2 b.png: ground_truth: False -> True" in out.stdout


def test_the_label_counts_have_a_legend_and_a_reversed_pair_says_so(tmp_path):
    """``Coat +1 -1 →1, Pullover 1→`` was explained nowhere; ``labelhub diff v2 v1`` read like a forward diff."""
    from labelhub.sync.versions.diff import LEGEND
    from tests.in_process import invoke_labelhub

    repo = two_versions(tmp_path)
    shown = invoke_labelhub("diff", "--repo", str(repo), "annotations-v1", "annotations-v2", check=True).stdout
    assert "- `label`: Coat 1→, Dress →1, Pullover +1\n" in shown and f"- {LEGEND}\n" in shown, shown
    assert "`→N` relabelled to it" in LEGEND and "`N→` relabelled from it" in LEGEND
    back = invoke_labelhub("diff", "--repo", str(repo), "annotations-v2", "annotations-v1", check=True).stdout
    assert "Reversed: annotations-v2 is the newer version (named first)" in back, back
    assert "Reversed" not in shown
    data = json.loads(invoke_labelhub("diff", "--repo", str(repo), "annotations-v2", "annotations-v1", "--json",
                                      check=True).stdout)
    assert data["reversed"] is True and data["removed"] == 1


def test_a_change_of_the_label_set_is_in_the_cards_changes():
    """The config gained "Ankle boot" (the ClassLabel went from 9 to 10 names, every model's class count with it)
    and neither the card's changes nor anything else said so."""
    from datasets import ClassLabel, Features, Value

    from labelhub.sync.versions.card import LABEL_SET_HEADING, class_names, dataset_card
    from labelhub.sync.versions.series import Series

    series = Series()
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag"]

    def card(existing, labels, manifest):
        features = Features({"label": ClassLabel(names=labels), "hf_path": Value("string")})
        block = card_block(manifest, {"label": "Choices"}, "image", changes="Since annotations-v18: +8 added.")
        return dataset_card(existing, series.csv_path, block, [series.hub_training_path], features=features,
                            series=series), features

    v18, _ = card(None, names, {**MANIFEST, "tag": "annotations-v18"})
    assert LABEL_SET_HEADING not in v18
    v19, features = card(v18, [*names, "Ankle boot"], MANIFEST)
    section = v19[v19.index("### Changes in annotations-v19"):v19.index("### Columns")]
    assert f"{LABEL_SET_HEADING}\n- `label`: labels added: Ankle boot (9 → 10 classes)" in section, section
    assert class_names(features) == {"label": [*names, "Ankle boot"]}
    again, _ = card(v19, [*names, "Ankle boot"], {**MANIFEST, "tag": "annotations-v20"})
    assert LABEL_SET_HEADING not in again
    fewer, _ = card(v19, names, {**MANIFEST, "tag": "annotations-v20"})
    assert "- `label`: labels removed: Ankle boot (10 → 9 classes)" in fewer


def test_versions_has_a_header_and_the_first_version_says_so(tmp_path):
    """``labelhub versions`` printed ``1 annotations  1 tasks`` with no header; v1's card said ``since nothing``;
    the manifest's ``changes.changed`` was null while ``counts.changed`` held the title's ``~``."""
    from labelhub.sync.versions.diff import changes_text, diff_frames
    from tests import sample_repos
    from tests.in_process import invoke_labelhub

    repo = tmp_path / "repo"
    counts = {"annotations": 1, "tasks": 1, "annotators": 1, "added": 1, "changed": 0, "removed": 0}
    manifest = {"tag": "annotations-v1", "created_at": "2026-12-06T06:31:03+00:00", "counts": counts}
    sample_repos.local_repo_with(repo, {"annotations/annotations.csv": V1.encode(),
                                        "annotations/manifest.json": json.dumps(manifest).encode()})
    sample_repos.git(repo, "tag", "annotations-v1")
    listed = invoke_labelhub("versions", "--repo", str(repo), check=True)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["annotations-v1"]  # scripts read versions only
    lines = [*listed.stderr.splitlines()[-1:], *listed.stdout.splitlines()]
    assert lines[0].split()[:6] == ["tag", "created", "(UTC)", "commit", "annotations", "tasks"], lines
    assert lines[1].split()[0] == "annotations-v1" and lines[1].split()[3:] == ["1", "1", "+1", "~0", "-0"], lines
    assert "annotations " not in lines[1] and "tasks" not in lines[1]

    first = card_block({**MANIFEST, "parent_version": None, "counts": {**MANIFEST["counts"], "ground_truth": 3}},
                       {"label": "Choices"}, "image")
    assert "(the first version: +8 ~2 -0). 3 annotations marked as ground truth." in first and "nothing" not in first
    assert "(+8 ~2 -0 since annotations-v18)." in card_block(MANIFEST, {"label": "Choices"}, "image")
    rows = pd.DataFrame({"annotation_id": [1], "label": ["Coat"]})
    change = diff_frames(rows.iloc[0:0], rows, {"label": "Choices"}, None, "annotations-v1")
    text = changes_text(change, 0)
    assert text.startswith("First version: +1 added") and change.to_dict()["changed"] == 0


def _example(name: str):
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_yolo_class_ids_follow_the_label_config_not_the_sorted_labels_found(capsys):
    """A local clone's classes were ``sorted(found)``: a version without "item" boxes, or with a new label sorting
    first, gave the other labels other ids."""
    import datasets

    yolo = _example("boxes_to_yolo")
    box = {"x": datasets.Value("float32"), "label": datasets.Value("string")}
    rows = datasets.Dataset.from_dict({"box": [[{"x": 0.1, "label": "tag"}], [{"x": 0.2, "label": "logo"}]]},
                                      features=datasets.Features({"box": datasets.List(box)}))
    order = ["tag", "item", "logo"]
    assert yolo.yolo_classes(rows, "box", {"class_names": {"box": order}}) == order  # "item" absent: ids kept
    assert yolo.yolo_classes(rows, "box", {"class_names": {"box": ["logo"]}}) == ["logo", "tag"]  # unknown appended
    assert yolo.yolo_classes(rows, "box", {}, ["tag", "logo", "zzz"]) == ["tag", "logo", "zzz"]
    assert capsys.readouterr().err == ""
    assert yolo.yolo_classes(rows, "box", {}) == ["logo", "tag"]
    assert "--classes" in capsys.readouterr().err  # the fallback says its ids may shift


def test_classifier_folds_keep_an_images_rows_together():
    """148 rows of 74 images (two annotators each): the same image was in the training and the test rows of a fold,
    with conflicting labels."""
    train = _example("train_classifier")
    groups = [f"img/{i // 2}.png" for i in range(24)]
    y = ["a", "b", "c"] * 8
    for fit, test in train.folds(y, groups):
        assert not {groups[i] for i in fit} & {groups[i] for i in test}


def test_a_version_without_rows_is_one_line_not_a_traceback(tmp_path):
    """``ValueError: Instruction "train" corresponds to no data!`` (and its kin) came out as a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests import sample_repos

    card = ("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path:\n    - metadata.jsonl\n"
            "    - img/**\n---\n")
    repo = sample_repos.local_repo_with(tmp_path / "repo", {"README.md": card.encode(), "metadata.jsonl": b""})
    sample_repos.git(repo, "tag", "annotations-v1")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "examples" / "train_classifier.py"), str(repo), "annotations-v1"],
                         capture_output=True, text=True, timeout=180, cwd=root,
                         env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip() == "annotations-v1: the default config has no rows (no annotation in this version, or " \
                                 "all of them skipped)"


def test_train_classifier_reads_the_consensus_config(versions):
    """``examples/_repo.load_version`` took only the default and rows configs: one row per image was not offered."""
    from tests.test_ship_examples import run_example

    repo, _, v2, _ = versions
    out = run_example("train_classifier.py", repo, "annotations-v2", "--config", "consensus")
    classes = sorted(set(v2.values()))
    assert out.startswith(f"annotations-v2: {len(v2)} images, {len(classes)} classes ({', '.join(classes)});"), out
    default = run_example("train_classifier.py", repo, "annotations-v2")
    assert "folds grouped by image" in default or "training accuracy" in default


from tests.test_ship_examples import _datasets_cache, versions  # noqa: E402,F401 (fixtures: the examples' versions)

"""What changed between two versions: ``labelhub diff`` and the summary each export carries.

Unit tests of :func:`labelhub.sync.versions.diff.diff_frames`, then end to end: real Label Studio, a local
repo, three exports; ``labelhub diff`` (text and ``--json``), the commit description and the card.
"""
from __future__ import annotations

import json

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from labelhub.sync.versions.diff import cell_labels, diff_frames, summary_text
from labelhub.sync.versions.exporter import diff_counts, differing_ids
from tests import sample_repos
from tests.in_process import invoke_labelhub

CONTROLS = {"kind": "Choices", "box": "RectangleLabels"}


def frame(rows):
    return pd.DataFrame([{"annotation_id": aid, "annotator": who, "was_cancelled": False, "kind": kind,
                          "box": json.dumps([{"x": 0, "y": 0, "width": 1, "height": 1, "label": b} for b in boxes])}
                         for aid, who, kind, boxes in rows])


def test_added_removed_and_relabelled_are_counted_per_label_and_annotator():
    old = frame([(1, "a@x", "cat", ["car"]), (2, "a@x", "dog", []), (3, "b@x", "cat", ["car", "bus"])])
    new = frame([(1, "a@x", "dog", ["car"]), (3, "b@x", "cat", ["bus"]), (4, "b@x", "cat|dog", [])])
    diff = diff_frames(old, new, CONTROLS, "annotations-v1", "annotations-v2")
    assert (diff.added, diff.removed, diff.relabelled) == (1, 1, 2)
    assert diff.by_label["kind"]["cat"] == {"relabelled_from": 1, "added": 1}
    assert diff.by_label["kind"]["dog"] == {"relabelled_to": 1, "removed": 1, "added": 1}
    assert diff.by_label["box"]["car"] == {"relabelled_from": 1}
    assert diff.by_annotator == {"a@x": {"relabelled": 1, "removed": 1}, "b@x": {"relabelled": 1, "added": 1}}
    assert {"control": "kind", "from": "cat", "to": "dog", "count": 1} in diff.relabels
    assert {"control": "box", "from": "bus|car", "to": "bus", "count": 1} in diff.relabels
    assert summary_text(diff).startswith("Since annotations-v1: +1 added, -1 removed, ~2 relabelled.")


def test_cells_are_read_in_the_csv_forms():
    assert cell_labels("Choices", "a|b") == ["a", "b"]
    assert cell_labels("RectangleLabels", '[{"label": "car"}, {"label": "car"}]') == ["car", "car"]
    assert cell_labels("TextArea", "free text") == ["(value)"] and cell_labels("Number", "5") == ["(value)"]
    assert cell_labels("KeyPointLabels", '[{"x": 1, "keypointlabels": ["eye", "nose"]}]') == ["eye", "nose"]
    assert cell_labels(None, float("nan")) == [] and cell_labels("Choices", "") == []


labels = st.sampled_from(["cat", "dog", "bus"])
rows = st.dictionaries(st.integers(1, 30), st.tuples(st.sampled_from(["a@x", "b@x"]), labels,
                                                      st.lists(labels, max_size=3)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(old=rows, new=rows)
def test_counts_add_up_whatever_the_versions(old, new):
    diff = diff_frames(frame([(k, *v) for k, v in old.items()]), frame([(k, *v) for k, v in new.items()]), CONTROLS)
    assert diff.added == len(new.keys() - old.keys()) and diff.removed == len(old.keys() - new.keys())
    assert diff.relabelled <= len(new.keys() & old.keys())
    assert sum(c.get("added", 0) for c in diff.by_annotator.values()) == diff.added
    reverse = diff_frames(frame([(k, *v) for k, v in new.items()]), frame([(k, *v) for k, v in old.items()]),
                          CONTROLS)
    assert (reverse.added, reverse.removed, reverse.relabelled) == (diff.removed, diff.added, diff.relabelled)


@settings(max_examples=60, deadline=None)
@given(old=rows, new=rows)
def test_the_rows_whose_hash_differs_give_the_whole_diff(old, new):
    """What the exporter compares (:func:`labelhub.sync.versions.exporter.differing_ids`): a row with the same hash
    in both versions has the same cells, so leaving it out changes nothing."""
    hashes = [{k: repr(v) for k, v in version.items()} for version in (old, new)]
    ids = differing_ids(*hashes)
    whole = diff_frames(frame([(k, *v) for k, v in old.items()]), frame([(k, *v) for k, v in new.items()]), CONTROLS)
    part = diff_frames(frame([(k, *v) for k, v in old.items() if k in ids]),
                       frame([(k, *v) for k, v in new.items() if k in ids]), CONTROLS)
    assert part.to_dict() == whole.to_dict()
    assert len(ids) == sum(diff_counts(*hashes))
    assert diff_counts(*hashes) == diff_counts(*hashes, ids) == (
        len(new.keys() - old.keys()), sum(1 for k in new.keys() & old.keys() if repr(new[k]) != repr(old[k])),
        len(old.keys() - new.keys()))


CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="text-only"/><Choice value="illustrated"/></Choices></View>')


def choice(value):
    return [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [value]}}]


def test_diff_command_and_each_export_say_what_changed(label_studio, make_project, tmp_path):
    client = label_studio.client()
    repo = tmp_path / "repo"
    sample_repos.init_local_repo(repo)
    sample_repos.commit_local(repo, sample_repos.image_files(0, 4))
    project = make_project("diff", CONFIG)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token}
    sync = ["sync", "--repo", str(repo), "--project", str(project.id), "--state", str(tmp_path / "s.sqlite3"), "--once"]
    invoke_labelhub(*sync, env=env, check=True)
    tasks = sorted(client.tasks.list(project=project.id, page_size=10), key=lambda t: t.id)
    made = [client.annotations.create(task.id, result=choice("text-only")) for task in tasks[:3]]
    invoke_labelhub(*sync, env=env, check=True)  # annotations-v1
    client.annotations.update(made[0].id, result=choice("illustrated"))
    client.annotations.delete(made[1].id)
    client.annotations.create(tasks[3].id, result=choice("illustrated"))
    invoke_labelhub(*sync, env=env, check=True)  # annotations-v2

    shown = invoke_labelhub("diff", "--repo", str(repo), "annotations-v1", "annotations-v2", env=env, check=True).stdout
    assert "+1 added, -1 removed, ~1 relabelled" in shown and "kind: text-only" in shown, shown
    data = json.loads(invoke_labelhub("diff", "--repo", str(repo), "annotations-v1", "annotations-v2", "--json",
                                      env=env, check=True).stdout)
    assert (data["added"], data["removed"], data["relabelled"], data["changed"]) == (1, 1, 1, 1)
    assert "- relabels: \n" not in shown + "\n"  # the table lists them
    assert data["relabels"] == [{"control": "kind", "from": "text-only", "to": "illustrated", "count": 1}]
    assert data["by_label"]["kind"]["illustrated"] == {"added": 1, "relabelled_to": 1}
    assert list(data["by_annotator"].values()) == [{"added": 1, "removed": 1, "relabelled": 1}]

    description = sample_repos.git(repo, "log", "-1", "--format=%B", "annotations-v2")
    card = sample_repos.git(repo, "show", "annotations-v2:README.md")
    manifest = json.loads(sample_repos.git(repo, "show", "annotations-v2:annotations/manifest.json"))
    for text in (description, card):
        assert "Since annotations-v1: +1 added, -1 removed, ~1 relabelled." in text
    assert manifest["changes"]["relabelled"] == 1 and manifest["controls"] == {"kind": "Choices"}
    bad = invoke_labelhub("diff", "--repo", str(repo), "annotations-v1", "annotations-v9", env=env)
    assert bad.returncode == 1 and "annotations-v9" in bad.stderr and "Traceback" not in bad.stderr


def test_labels_that_look_like_numbers_are_diffed_as_written(tmp_path):
    """A CSV read with guessed types turned the labels 01 and 2.50 into 1 and 2.5, and an empty cell in one version
    made every row of the other read as relabelled."""
    from labelhub.repos.git import LocalGitRepo
    from labelhub.sync.versions.diff import diff_versions

    header = "task_id,annotation_id,hf_path,image,kind,annotator,was_cancelled\n"
    old = header + "1,10,a.png,u,01,x@y,False\n2,20,b.png,u,02,x@y,False\n"
    new = old + "3,30,c.png,u,,x@y,True\n4,40,d.png,u,2.50,x@y,False\n"
    repo = tmp_path / "repo"
    sample_repos.local_repo_with(repo, {"annotations/annotations.csv": old.encode()})
    sample_repos.git(repo, "tag", "annotations-v1")
    sample_repos.commit_local(repo, {"annotations/annotations.csv": new.encode()})
    sample_repos.git(repo, "tag", "annotations-v2")
    change = diff_versions(LocalGitRepo(str(repo)), "annotations-v1", "annotations-v2")
    assert (change.added, change.relabelled) == (2, 0), change.to_dict()
    assert "2.50" in json.dumps(change.to_dict()) and '"1.0"' not in json.dumps(change.to_dict())


def test_versions_of_a_series_the_repo_lacks_names_the_series_it_holds(tmp_path):
    repo = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 1))
    for tag in ("train-v1", "train-v2", "test-v1", "release-1.0"):
        sample_repos.git(repo, "tag", tag)
    out = invoke_labelhub("versions", "--repo", str(repo), check=True).stdout.strip()
    assert out == ("no versions of the series 'annotations' (tags annotations-vN) yet; the repo holds versions of "
                   "'test', 'train': list them with that project's --csv-path (and --tag-prefix if it set one)")
    alone = sample_repos.local_repo_with(tmp_path / "empty", sample_repos.image_files(0, 1))
    assert invoke_labelhub("versions", "--repo", str(alone), check=True).stdout.strip() == \
        "no versions of the series 'annotations' (tags annotations-vN) yet"


def test_rows_changed_in_no_label_are_counted_and_said():
    """``labelhub diff`` counts what a version's title counts as ``~``: rows changed in any column but the bookkeeping
    ones (a row saved again with the same labels has a newer ``updated_at`` and ``lead_time``, and is not changed)."""
    from labelhub.sync.versions.diff import changed_rows, changes_text

    old = pd.DataFrame({"annotation_id": ["1", "2", "3"], "kind": ["a", "b", "c"], "ground_truth": ["False"] * 3,
                        "lead_time": ["1.0", "2.0", "3.0"], "updated_at": ["t1", "t2", "t3"]})
    new = old.assign(ground_truth=["False", "True", "False"], kind=["a", "b", "d"])
    diff = diff_frames(old, new, {"kind": "Choices"}, "v1", "v2")
    assert changed_rows(old, new) == 2 and diff.relabelled == 1
    assert changed_rows(old, new.assign(lead_time=["1.5", "2.0", "3.0"], updated_at=["t4", "t2", "t3"])) == 2
    assert changes_text(diff, 2).endswith("~2 changed: 1 relabelled, 1 in other columns only (task data, annotator, "
                                          "ground truth, annotated revision, or the export's format)")
    assert changes_text(diff, 1) == summary_text(diff)
    assert changed_rows(old, new.assign(annotated_revision="x")) == 3  # a column of a newer format: every row
    # a column some exports have (other_results, a metadata key): only the rows with a value in it
    assert changed_rows(old, new.assign(other_results=["[]", "", ""])) == 3
    assert changed_rows(old.assign(other_results=["[]", "", ""]), new) == 3


def test_controls_without_labels_are_counted_not_listed_and_edits_are_said():
    """A brush's run-length numbers, a transcription or a polygon's points were each listed as a "label" in every
    commit description and card: 200 brush annotations made a 2.7 MB summary."""
    controls = {"kind": "Choices", "mask": "BrushLabels", "note": "TextArea", "box": "RectangleLabels"}
    def rows(ids, version):
        return pd.DataFrame({"annotation_id": [str(i) for i in ids],
                             "kind": [f"label{i}" for i in ids],
                             "mask": [json.dumps([{"rle": list(range(i, i + 300)), "brushlabels": ["car"]}]) for i in ids],
                             "note": [f"text {i} {version if i % 2 else ''}" for i in ids],
                             "box": [json.dumps([{"x": 0.1 * version, "label": "car"}]) if i < 3 else "" for i in ids]})
    diff = diff_frames(rows(range(200), 1), rows(range(100, 300), 2), controls, "v1", "v2")
    text = summary_text(diff)
    assert len(text) < 2_000 and "rle" not in text and "text 1" not in text
    lines = text.splitlines()
    assert "- `mask`: car +100 -100" in lines and "- `note`: values +100 -100, 50 edited" in lines
    assert lines[1].startswith("- `kind`: ") and lines[1].endswith(", and 180 more labels")
    assert diff.edited == {"note": 50} and diff.relabelled == 50
    moved = diff_frames(rows(range(3), 1), rows(range(3), 2), {"box": "RectangleLabels"}, "v1", "v2")
    assert moved.relabelled == 3 and moved.edited == {"box": 3}
    assert summary_text(moved).splitlines()[1] == "- `box`: 3 edited"  # moved boxes, the same labels

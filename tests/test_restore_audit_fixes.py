"""``labelhub restore``: what an audit found, each fixed and checked against a real Label Studio.

- a restore into a project that already has tasks of the version's files (the project that exported it) makes no
  second task of them, says so and exits 1;
- a version of another series is read with its manifest's CSV, and a ``--csv-path`` the manifest contradicts is
  refused;
- annotators without a Label Studio user are named, with their annotations' count;
- a row with too many or too few cells, a duplicated annotation id, a broken ``other_results`` cell reject that row
  only, named by its CSV line (a hypothesis property: any corrupted row, the others restored identically);
- an older Labels cell skips that control only; an annotation none of whose results the project takes is skipped;
- a commit sha prefix is a version; summary counts nest; ``diff`` keeps a label holding ``|`` whole.
"""
from __future__ import annotations

import csv
import io
import json
import uuid

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelhub.sync.versions.restore import plan_tasks, read_rows

from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.test_restore import CONFIG, choice, rect, restore, synced_repo


@pytest.fixture(scope="module")
def exported(label_studio, tmp_path_factory):
    """A local repo of 4 images synced into a project and annotated (3 tasks, 4 annotations, two by a second
    user), exported as ``annotations-v1``; yields ``(repo, env, project id, sync state, second user's email)``. The
    project stays for the module."""
    client = label_studio.client()
    project = client.projects.create(title="audit source", label_config=CONFIG)
    email = f"second-{uuid.uuid4().hex[:8]}@labelhub.test"
    second = client.users.create(username=email, email=email, password="second-user-password-1")
    tmp = tmp_path_factory.mktemp("audit")
    try:
        repo, env, sync, tasks = synced_repo(label_studio, project.id, tmp, 4)
        client.annotations.create(tasks[0].id, result=[*choice("Bag", "Coat"), rect(12.5, "Bag")], lead_time=2.5)
        client.annotations.create(tasks[0].id, result=choice("Bag"), completed_by=second.id)
        client.annotations.create(tasks[1].id, result=[rect(40.0, "Sneaker")], completed_by=second.id)
        client.annotations.create(tasks[2].id, result=choice("Coat"))
        invoke_labelhub(*sync, env=env, check=True)  # annotations-v1
        assert "annotations-v1" in sample_repos.git(repo, "tag")
        yield repo, env, project.id, tmp / "s.sqlite3", email
    finally:
        client.projects.delete(project.id)


def task_count(label_studio, project_id) -> int:
    return len(list(label_studio.client().tasks.list(project=project_id, page_size=100)))


# -- 1: no second task of a file the project has --------------------------------------------------------------------

@pytest.mark.parametrize("own_state", [False, True], ids=["new-state", "the-sync's-state"])
def test_restore_into_the_exporting_project_makes_no_duplicate(label_studio, exported, tmp_path, own_state):
    """It made 4 tasks (6 → 10) and the next sync exported the duplicates."""
    repo, env, project_id, sync_state, _ = exported
    before = task_count(label_studio, project_id)
    state = sync_state if own_state else tmp_path / "r.sqlite3"
    for _ in range(2):  # a re-run does the same
        result = restore(repo, project_id, state, env)
        assert result.returncode == 1, result.stderr
        assert result.stdout.splitlines()[-1] == (
            "tasks created: 0 (3 skipped: the project has their files' tasks), annotations: 0, annotators without a "
            "Label Studio user: 0, rows rejected: 0"), result.stdout
        assert "3 task(s) of the version are not restored: the project already has tasks of their files" \
            in result.stderr and "Restore into a new project" in result.stderr, result.stderr
    assert task_count(label_studio, project_id) == before == 4


def v1_csv(repo) -> str:
    return sample_repos.git(repo, "show", "annotations-v1:annotations/annotations.csv") + "\n"


def restored_annotation_ids(label_studio, project_id) -> list[int]:
    tasks = label_studio.client().tasks.list(project=project_id, page_size=100, fields="all")
    return sorted(a["import_id"] for t in tasks for a in t.annotations)


# -- 2: a version of another series is read with its manifest's CSV ---------------------------------------------------

def test_another_series_is_read_with_its_manifests_csv(label_studio, make_project, exported, tmp_path):
    """``--tag-prefix test`` without ``--csv-path`` restored the default series' CSV under test-v1, exit 0."""
    repo, env, _, _, _ = exported
    lines = v1_csv(repo).splitlines(keepends=True)
    manifest = json.loads(sample_repos.git(repo, "show", "annotations-v1:annotations/manifest.json"))
    test_csv = "".join(lines[:2])  # the test project's version: one annotation
    sample_repos.commit_local(repo, {"annotations/test.csv": test_csv.encode(), "annotations/test.manifest.json":
                                     json.dumps({**manifest, "csv_path": "annotations/test.csv", "tag": "test-v1"})
                                     .encode()}, message="test v1")
    sample_repos.git(repo, "tag", "test-v1")
    expected = [int(lines[1].split(",")[1])]
    for n, extra in enumerate((["--tag-prefix", "test"], [])):
        target = make_project(f"series {n}", CONFIG)
        result = restore(repo, target.id, tmp_path / f"t{n}.sqlite3", env, *extra, tag="test-v1")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].startswith("tasks created: 1, annotations: 1,"), result.stdout
        assert restored_annotation_ids(label_studio, target.id) == expected
    target = make_project("series refused", CONFIG)
    refused = restore(repo, target.id, tmp_path / "x.sqlite3", env, "--tag-prefix", "test", "--csv-path",
                      "annotations/annotations.csv", tag="test-v1")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "annotations/test.csv" in refused.stderr and "--csv-path annotations/annotations.csv" in refused.stderr
    assert restored_annotation_ids(label_studio, target.id) == []


# -- 6: a version's short sha, an annotated tag's object sha -----------------------------------------------------------

def test_a_short_sha_and_a_tag_objects_sha_are_the_version(label_studio, make_project, exported, tmp_path):
    repo, env, _, _, _ = exported
    commit = sample_repos.git(repo, "rev-parse", "annotations-v1^{commit}").strip()
    tag_object = sample_repos.git(repo, "rev-parse", "annotations-v1").strip()  # the export's tags are annotated
    assert tag_object != commit
    for n, tag in enumerate((commit[:12], tag_object)):
        target = make_project(f"sha {n}", CONFIG)
        result = restore(repo, target.id, tmp_path / f"s{n}.sqlite3", env, tag=tag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].startswith("tasks created: 3, annotations: 4,"), result.stdout
    bad = restore(repo, target.id, tmp_path / "s9.sqlite3", env, tag="0000000")
    assert bad.returncode == 1 and "is no commit of" in bad.stderr and "40-digit" in bad.stderr, bad.stderr


# -- 4: rows with too many or too few cells, a repeated annotation id, a broken other_results cell -------------------

def test_bad_rows_are_rejected_by_their_line_and_the_others_restored(label_studio, make_project, exported, tmp_path):
    """A row with extra trailing cells shifted every row (pandas took them as the index: 0 restored), a row of 5
    cells was restored with an empty annotator and times."""
    repo, env, _, _, _ = exported
    header, *rows = v1_csv(repo).splitlines()
    assert len(rows) == 4 and "other_results" not in header
    header += ",other_results"
    rows = [r + "," for r in rows]
    cells = rows[3].split(",")
    bad = [
        rows[0] + ",fmnist/stray,cells",                    # line 6: too many cells
        ",".join(cells[:5]),                                  # line 7: cut short
        rows[1],                                             # line 8: annotation_id repeated
        ",".join(cells[:1] + ["999"] + cells[2:-1]) + ",not json",  # line 9: other_results broken
    ]
    csv = "\n".join([header, *rows, *bad]) + "\n"
    sample_repos.commit_local(repo, {"annotations/annotations.csv": csv.encode()}, message="bad rows")
    sample_repos.git(repo, "tag", "bad-rows")
    target = make_project("bad rows", CONFIG)
    result = restore(repo, target.id, tmp_path / "b.sqlite3", env, tag="bad-rows")
    assert result.returncode == 1, result.stderr
    out = result.stdout.splitlines()
    ids = [r.split(",")[:2] for r in rows]
    assert out[0] == f"line 6 (task_id {ids[0][0]}, annotation_id {ids[0][1]}): 17 cells where the header has 15 " \
                     "(a stray separator or a cut line)", out
    assert out[1] == f"line 7 (task_id {ids[3][0]}, annotation_id {ids[3][1]}): 5 cells where the header has 15 " \
                     "(a stray separator or a cut line)", out
    assert out[2] == f"line 8 (task_id {ids[1][0]}, annotation_id {ids[1][1]}): annotation_id {ids[1][1]} is also " \
                     "line 3's (a version holds each annotation once): this row is left out", out
    assert out[3].startswith(f"line 9 (task_id {ids[3][0]}, annotation_id 999): other_results: "), out
    assert out[4] == "tasks created: 3, annotations: 4, annotators without a Label Studio user: 0, rows rejected: 4"
    assert restored_annotation_ids(label_studio, target.id) == sorted(int(i[1]) for i in ids)


HEADER = ["task_id", "annotation_id", "hf_path", "image", "kind", "box", "annotator", "created_at", "updated_at",
          "lead_time", "was_cancelled", "ground_truth", "annotated_revision", "other_results"]
# a bare "\r" is a line break to every CSV reader (pandas' to_csv leaves it unquoted: left to the exporter)
cell_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=6)


def good_row(n: int, kind: str, note: str) -> list[str]:
    return [str(n // 2 + 1), str(100 + n), f"img/{n}.png", f"https://example.test/{n}.png", kind, "",
            f"{note}@x", "t1", "t2", "", "False", "False", "", ""]


@settings(max_examples=80, deadline=None)
@given(kinds=st.lists(st.sampled_from(["Bag", "Coat", "Bag|Coat", ""]), min_size=2, max_size=8),
       notes=st.lists(cell_text, min_size=8, max_size=8), which=st.integers(0, 7),
       how=st.sampled_from(["extra", "short", "repeat", "other_results", "task_id"]), junk=cell_text)
def test_any_corrupted_row_rejects_that_row_only(kinds, notes, which, how, junk):
    """Whatever one row's corruption (a stray cell, a cut line, a repeated annotation id, a broken other_results
    cell, a task_id that is no number), that row is rejected by its CSV line, the others plan identically."""
    rows = [good_row(n, kind, notes[n]) for n, kind in enumerate(kinds)]
    which %= len(rows)
    if how == "repeat":
        which = max(which, 1)  # the later of two rows with one annotation_id is the one rejected
    bad = list(rows[which])
    if how == "extra":
        bad += [junk, "x"]
    elif how == "short":
        bad = bad[:5]
    elif how == "repeat":
        bad[1] = rows[0][1]
    elif how == "other_results":
        bad[-1] = "{" + junk
    else:
        bad[0] = "n" + junk
    corrupted = [*rows[:which], bad, *rows[which + 1:]]

    def write(records) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([HEADER, *records])
        return out.getvalue().encode()

    line = write(rows[:which]).count(b"\n") + 1  # a cell holding a newline makes its row two lines

    def plan(raw: bytes):
        frame, rejected = read_rows(raw, "a.csv")
        tasks, errors = plan_tasks(frame, {"controls": {"kind": "Choices", "box": "RectangleLabels"}}, CONFIG,
                                   "owner/ds", "annotations-v1")
        return tasks, [*rejected, *errors]

    tasks, errors = plan(write(corrupted))
    assert [e.row for e in errors] == [line], errors
    expected, none = plan(write([r for n, r in enumerate(rows) if n != which]))
    assert none == [] and [(t.data, t.annotations, t.annotators) for t in tasks] == [
        (t.data, t.annotations, t.annotators) for t in expected]


# -- 5: an older Labels cell skips that control only; an annotation of dropped results is not made -------------------

def test_a_labels_cell_without_regions_skips_that_cell_and_an_emptied_annotation_is_skipped(caplog):
    config = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="PER"/>'
              '<Label value="LOC"/></Labels><Choices name="kind" toName="text"><Choice value="news"/></Choices>'
              '</View>')
    columns = ["task_id", "annotation_id", "hf_path", "text", "ner", "kind", "gone", "annotator", "created_at",
               "updated_at", "lead_time", "was_cancelled", "ground_truth", "annotated_revision"]
    rows = [["1", "10", "", "Ann in Rome", "PER|LOC", "news", "", "a@x", "", "", "", "False", "False", ""],
            ["2", "20", "", "Bob", "", "", "x", "a@x", "", "", "", "False", "False", ""],  # only a control it lacks
            ["3", "30", "", "Cy", "", "", "", "a@x", "", "", "", "False", "False", ""]]  # empty as annotated
    tasks, errors = plan_tasks(pd.DataFrame(rows, columns=columns), {"controls": {"ner": "Labels", "kind": "Choices",
                                                                                   "gone": "Choices"}},
                               config, "owner/ds", "annotations-v1")
    assert errors == []
    one, two, three = tasks
    assert [r["from_name"] for r in one.annotations[0]["result"]] == ["kind"]
    assert two.annotations == [] and two.annotators == []
    assert three.annotations[0]["result"] == []
    assert "ner: 1 cell(s) hold labels without their regions" in caplog.text
    assert "1 annotation(s) are not restored: none of their results" in caplog.text
    assert "a later restore into this project does not add them" in caplog.text


# -- 3 and 8: unmatched annotators named; a re-run plans (and warns about) only what it may restore -------------------

def test_unmatched_annotators_are_named_and_a_rerun_is_quiet(label_studio, make_project, exported, tmp_path):
    """``annotators without a Label Studio user: 6`` counted annotations and named nobody; a re-run that restored
    nothing repeated every warning (and planned every row)."""
    repo, env, _, _, email = exported
    sample_repos.commit_local(repo, {"annotations/annotations.csv": v1_csv(repo).replace(email, "gone@else.test")
                                     .encode()}, message="unmatched")
    sample_repos.git(repo, "tag", "unmatched")
    target = make_project("unmatched", CONFIG.replace('<Choice value="Coat"/>', ""))
    state = tmp_path / "u.sqlite3"
    first = restore(repo, target.id, state, env, tag="unmatched")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == ("tasks created: 3, annotations: 4, annotators without a Label Studio "
                                             "user: 1, rows rejected: 0"), first.stdout
    assert "2 annotation(s) of 1 annotator(s) without a Label Studio user" in first.stderr, first.stderr
    assert "gone@else.test (2)" in first.stderr and "restore into a new project" in first.stderr
    assert "does not re-attribute" in first.stderr and "'Coat'" in first.stderr
    again = restore(repo, target.id, state, env, tag="unmatched")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == ("tasks created: 0 (3 already restored), annotations: 0, annotators "
                                             "without a Label Studio user: 0, rows rejected: 0"), again.stdout
    assert "'Coat'" not in again.stderr and "gone@else.test" not in again.stderr, again.stderr


# -- 9: diff keeps a label holding "|" whole, as restore does -----------------------------------------------------------

def test_diff_counts_a_label_holding_the_separator_as_one(tmp_path):
    """``labelhub diff`` counted a choice ``A|B`` as ``A`` and ``B``."""
    from labelhub.repos import open_repo
    from labelhub.sync.versions.diff import cell_labels, diff_versions

    assert cell_labels("Choices", "A|B|C", ["A|B", "C"]) == ["A|B", "C"]
    repo = tmp_path / "repo"
    sample_repos.init_local_repo(repo)
    header = "task_id,annotation_id,hf_path,image,kind,annotator,was_cancelled\n"
    for n, (rows, distribution) in enumerate((("1,10,a.png,u,C,a@x,False\n", {"C": 1}),
                                              ("1,10,a.png,u,A|B,a@x,False\n2,20,b.png,u,A|B|C,a@x,False\n",
                                               {"A|B": 2, "C": 1})), 1):
        manifest = {"csv_path": "annotations/annotations.csv", "controls": {"kind": "Choices"},
                    "label_distribution": {"kind": distribution}}
        sample_repos.commit_local(repo, {"annotations/annotations.csv": (header + rows).encode(),
                                         "annotations/manifest.json": json.dumps(manifest).encode()},
                                  message=f"v{n}")
        sample_repos.git(repo, "tag", f"annotations-v{n}")
    diff = diff_versions(open_repo(str(repo)), "annotations-v1", "annotations-v2")
    assert diff.by_label["kind"] == {"A|B": {"added": 1, "relabelled_to": 1}, "C": {"added": 1, "relabelled_from": 1}}
    assert diff.relabels == [{"control": "kind", "from": "C", "to": "A|B", "count": 1}]

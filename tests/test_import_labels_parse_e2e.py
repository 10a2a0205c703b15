"""End to end in a real Label Studio: a url with a rejected row is held back whole and comes whole once the file is
fixed, and a repo file written ``./path`` in a second file is the task the first file made (no second prediction)."""
from __future__ import annotations

from tests import sample_repos
from tests.test_import_labels_to_tasks import HEADER, env, invoke, project, repo, tasks_of  # noqa: F401 (fixtures)


def test_a_held_back_url_is_imported_whole_once_its_rows_are_fixed(label_studio, project, repo, invoke, tmp_path):
    dataset, _ = repo
    p0, p1 = sample_repos.image_path(0), sample_repos.image_path(1)
    rows = (f"{p0},Bag,,,0.1,0.1,0.4,0.4\n"       # 2 good
            f"{p0},Bag,,,0.5,0.5,0.4,0.9\n"       # 3 left >= right
            f"{p0},Hat,,,0.5,0.5,0.9,0.9\n"       # 4 unknown label
            f"{p1},Sneaker,,,0,0,1,1\n")          # 5 good
    labels = tmp_path / "boxes.csv"
    labels.write_text(HEADER + rows)
    first = invoke(str(labels), "--project", str(project.id), "--repo", str(dataset.path))
    assert first.exit_code == 1
    lines = first.output.splitlines()
    assert "line 2: held back: another row of its url was rejected (rejected: lines 3, 4)" in lines
    assert "rows read: 4, rejected: 3" in lines and "tasks created: 1, regions: 1, as predictions" in lines
    assert sorted(tasks_of(label_studio, project.id)) == [p1]

    labels.write_text(HEADER + rows.replace("0.5,0.5,0.4,0.9", "0.5,0.5,0.6,0.9").replace("Hat", "Sneaker"))
    fixed = invoke(str(labels), "--project", str(project.id), "--repo", str(dataset.path))
    assert fixed.exit_code == 0, fixed.output
    assert "tasks created: 1 (1 already imported), regions: 3, as predictions" in fixed.output.splitlines()
    (task,) = tasks_of(label_studio, project.id)[p0]
    assert [r["value"]["rectanglelabels"] for r in task.predictions[0].result] == [["Bag"], ["Bag"], ["Sneaker"]]


def test_a_repo_file_spelled_otherwise_in_a_second_file_is_the_same_task(label_studio, project, repo, invoke,
                                                                          tmp_path):
    dataset, _ = repo
    p0 = sample_repos.image_path(0)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(HEADER + f"{p0},Bag,,,,,,\n")
    second.write_text(HEADER + f"./{p0},Coat,,,,,,\n")
    assert invoke(str(first), "--project", str(project.id), "--repo", str(dataset.path)).exit_code == 0
    again = invoke(str(second), "--project", str(project.id), "--repo", str(dataset.path))
    assert "tasks created: 0 (1 already imported), regions: 0, as predictions" in again.output.splitlines(), \
        again.output
    (task,) = [t for ts in tasks_of(label_studio, project.id).values() for t in ts]
    assert task.data["source_url"] == p0 and len(task.predictions) == 1


def test_a_label_column_under_another_name_is_refused_before_any_task(label_studio, project, invoke, tmp_path):
    labels = tmp_path / "labelscol.csv"
    labels.write_text("url,labels\nhttps://example.test/9.png,Bag\n")
    refused = invoke(str(labels), "--project", str(project.id))
    assert refused.exit_code == 1
    assert "no label column the import reads, and columns it does not: labels (the columns are url, pos_concepts" \
           in refused.output and "Traceback" not in refused.output
    assert label_studio.client().projects.get(project.id).task_number == 0

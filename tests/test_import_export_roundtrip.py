"""Round trip: boxes imported with ``labelhub import-csv --as annotations`` come back in the sync's
export as the same fractions (within 1e-6)."""
import io
import json
import subprocess

import pandas as pd
import pytest

from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.test_sync_export import CONFIG

BOXES = {  # path index → (left, top, right, bottom, label)
    0: (0.1, 0.2, 0.4, 0.6, "figure"),
    1: (0.123456, 0.0, 1.0, 0.987654, "text"),
    2: (0.5, 0.25, 0.75, 0.5, "figure"),
}


def test_imported_boxes_come_back_in_the_export_as_the_same_fractions(label_studio, tmp_path):
    repo = tmp_path / "repo"
    sample_repos.init_local_repo(repo)
    sample_repos.commit_local(repo, sample_repos.image_files(0, 3))
    project = label_studio.client().projects.create(title="round trip", label_config=CONFIG)
    lines = ["url,pos_concepts,left_col,top_row,right_col,bottom_row"]
    lines += [f"{sample_repos.image_path(i)},{label},{left},{top},{right},{bottom}"
              for i, (left, top, right, bottom, label) in BOXES.items()]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    state = ["--state", str(tmp_path / "state.sqlite3")]
    invoke_labelhub("import-csv", str(tmp_path / "labels.csv"), "--project", str(project.id), "--as", "annotations",
                    "--repo", str(repo), *state, env=env, check=True)
    invoke_labelhub("sync", "--repo", str(repo), "--project", str(project.id), *state, "--once", env=env, check=True)
    csv = subprocess.run(["git", "show", "annotations-v1:annotations/annotations.csv"], cwd=repo,
                         capture_output=True, check=True).stdout
    rows = pd.read_csv(io.BytesIO(csv)).set_index("hf_path")
    assert len(rows) == len(BOXES)  # the sync made no second task for the imported files
    for i, (left, top, right, bottom, label) in BOXES.items():
        [box] = json.loads(rows.loc[sample_repos.image_path(i), "box"])
        assert box["label"] == label
        assert [box["x"], box["y"], box["width"], box["height"]] == pytest.approx(
            [left, top, right - left, bottom - top], abs=1e-6)

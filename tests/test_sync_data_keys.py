"""A label config that reads task data the sync cannot fill (an audit of Label Studio's templates: question
answering's ``$question``, a dynamic ``<Choices value="$options">``, a second image): the sync exited with Label
Studio's raw 400 at every import, cut at 500 characters and quoting a task's signed file URL, and the daemon retried
it for ever. It is refused before anything is imported, in one line naming the keys and the metadata join that can
fill them; a metadata CSV with those columns makes the tasks.

Real Label Studio (``tests/labelstudio.py``), ``labelhub`` run in-process on local git repositories.
"""
from __future__ import annotations

import pytest

from labelhub.errors import LabelConfigError
from labelhub.label_config import data_field, task_data_keys
from labelhub.labelstudio_client import api_error_text
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.errors import LabelStudioError
from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.test_cli_errors import assert_one_line

QA_CONFIG = ('<View><Text name="text" value="$text"/><Header value="$title"/><Text name="question" value="$question"/>'
             '<Choices name="answer" toName="text"><Choice value="yes"/><Choice value="no"/></Choices></View>')


def _sync(label_studio, repo, project_id: int, state, *more: str):
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    return invoke_labelhub("sync", "--repo", str(repo), "--project", str(project_id), "--state", str(state),
                           "--once", "--no-export", *more, env=env)


def test_task_data_keys_follow_label_studios_rule():
    assert task_data_keys(QA_CONFIG) == {"text": "<Text name='text' value='$text'>",
                                         "question": "<Text name='question' value='$question'>"}  # no name: no key
    dynamic = ('<View><Image name="img" value="$image"/><Image name="other" value="$pair.right"/>'
               '<Choices name="c" toName="img" value="$options"/><Text name="t" value="Q: $prompt[0] asked"/></View>')
    assert list(task_data_keys(dynamic)) == ["image", "pair", "options", "prompt"]
    pages = ('<View><Image name="pages" valueList="$pages"/>'
             '<Choices name="c" toName="pages"><Choice value="a"/></Choices></View>')
    with pytest.raises(LabelConfigError, match=r"<Image name='pages' valueList='\$pages'> shows a list of files "
                                               r"per task, which the sync does not make \(one file, one task\)"):
        data_field(pages)


def test_keys_the_sync_cannot_fill_are_refused_before_any_import_and_a_metadata_column_fills_them(
        label_studio, make_project, tmp_path):
    project = make_project("question answering", QA_CONFIG)
    texts = {f"docs/doc-{i}.txt": f"text {i}\n".encode() for i in range(3)}
    repo = sample_repos.local_repo_with(tmp_path / "qa", texts)
    line = assert_one_line(_sync(label_studio, repo, project.id, tmp_path / "s"), 1)
    assert line == (f"Error: the label config of Label Studio project {project.id} reads task data the sync cannot "
                    "fill: 'question' (<Text name='question' value='$question'>). The sync fills 'text' (<Text "
                    "name='text'>) with each file; give each a column of a metadata CSV (--metadata FILE, one row per "
                    "file), or take those tags out of the label config"), line
    assert list(label_studio.client().tasks.list(project=project.id)) == []

    # a metadata CSV without the column: refused once its header is read (the daemon would stop: it cannot fix itself)
    sample_repos.commit_local(repo, {"meta.csv": b"file,note\n" + b"".join(f"doc-{i}.txt,n{i}\n".encode()
                                                                          for i in range(3))}, message="meta")
    proc = _sync(label_studio, repo, project.id, tmp_path / "s", "--metadata", "meta.csv", "--metadata-key", "-1")
    assert_one_line(proc, 1, "reads task data the sync cannot fill: 'question'",
                    "the metadata CSV meta.csv has no such column")
    assert list(label_studio.client().tasks.list(project=project.id)) == []

    sample_repos.commit_local(repo, {"meta.csv": b"file,question\n" + b"".join(f"doc-{i}.txt,Why {i}?\n".encode()
                                                                              for i in range(3))}, message="meta 2")
    proc = _sync(label_studio, repo, project.id, tmp_path / "s", "--metadata", "meta.csv", "--metadata-key", "-1")
    assert proc.returncode == 0, proc.stderr
    tasks = sorted(label_studio.client().tasks.list(project=project.id), key=lambda t: t.data["hf_path"])
    assert [(t.data["hf_path"], t.data["question"]) for t in tasks] == [(f"docs/doc-{i}.txt", f"Why {i}?")
                                                                       for i in range(3)]


def test_label_studios_refusal_of_a_task_is_one_line_without_the_task_or_its_signature(label_studio, make_project):
    project = make_project("refused import", QA_CONFIG)
    client = LabelStudioProject(label_studio.url, label_studio.api_key, project.id)
    task = {"text": "a text", "img": "http://127.0.0.1:9/files/k/" + "0" * 40 + "/a.png?exp=0&sig=SECRETSIGNATURE"}
    try:
        client.call(client.client.projects.import_tasks, project.id, request=[task])
    except LabelStudioError as exc:
        text = str(exc)
    else:
        raise AssertionError("Label Studio took a task without 'question'")
    assert text == (f"Label Studio at {label_studio.url} answered 400: Error at item 0: \"question\" key is expected "
                    "in task data [assume: item as is = task root with values]"), text
    assert api_error_text({"detail": "x", "url": "http://h/f.png?sig=SECRET&a=1"}) == "x"
    assert "SECRET" not in api_error_text("http://h/f.png?exp=1&sig=SECRET")
    assert "sig=…" in api_error_text("?sig=SECRET")

"""The import's fast paths give what the library calls they stand for give: the compiled globs of
:mod:`labelhub.sync.files.selection` select what ``huggingface_hub.utils.filter_repo_objects`` selects, and
:meth:`labelhub.repos.hub.HubRepo.file_url` is ``hf_hub_url``'s URL, and an import call's body
(:func:`labelhub.sync.labelstudio.project.encode_tasks`) is the one the SDK's ``projects.import_tasks`` sends
(property-based, pure)."""
from __future__ import annotations

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from huggingface_hub import hf_hub_url
from huggingface_hub.utils import filter_repo_objects
from label_studio_sdk import LabelStudio

from labelhub.label_config import data_field
from labelhub.repos import RepoFile
from labelhub.repos.hub import HubRepo
from labelhub.sync.files.selection import ALWAYS_EXCLUDE, iter_selected
from labelhub.sync.labelstudio.project import EncodedTasks, encode_tasks

SEGMENT = st.text(alphabet="abAB01._-[]*?/\\ #%é", min_size=1, max_size=6)
PATHS = st.lists(st.builds("/".join, st.lists(SEGMENT, min_size=1, max_size=3)), max_size=30)
PATTERNS = st.lists(st.one_of(SEGMENT, st.sampled_from(["*.png", "*.PNG", "a/", "a\\", "**/b*", "?.jpg", "[ab]*",
                                                         "README.md", "annotations/*"])), max_size=5)


@settings(max_examples=300, deadline=None)
@given(paths=PATHS, include=st.one_of(st.none(), PATTERNS), exclude=PATTERNS)
def test_compiled_globs_select_what_filter_repo_objects_selects(paths, include, exclude):
    files = [RepoFile(p, 1, "0" * 40) for p in paths]
    expected = list(filter_repo_objects(files, allow_patterns=list(include) if include else None,
                                        ignore_patterns=[*ALWAYS_EXCLUDE, *exclude], key=lambda f: f.path))
    assert list(iter_selected(files, include, exclude)) == expected


def test_an_image_tags_default_globs_select_images_only():
    include = data_field('<View><Image name="i" value="$image"/></View>').default_include
    files = [RepoFile(p, 1, "0" * 40) for p in ["a/x.png", "b/y.JPG", "c/z.txt", "README.md", "annotations/x.png"]]
    assert [f.path for f in iter_selected(files, include)] == ["a/x.png", "b/y.JPG"]


@settings(max_examples=200, deadline=None)
@given(paths=st.lists(st.text(min_size=1, max_size=20).filter(lambda p: "\x00" not in p), min_size=1, max_size=5),
       shas=st.lists(st.sampled_from(["a" * 40, "b" * 40]), min_size=1, max_size=3))
def test_file_urls_are_hf_hub_urls(paths, shas):
    repo = HubRepo("owner/name", endpoint="http://127.0.0.1:9")
    for sha in shas:
        for path in paths:
            assert repo.file_url(sha, path) == hf_hub_url("owner/name", path, repo_type="dataset", revision=sha,
                                                          endpoint="http://127.0.0.1:9")


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(tasks=st.lists(st.fixed_dictionaries({"data": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)}),
                      min_size=1, max_size=4))
def test_an_import_sends_the_body_the_sdks_import_tasks_sends(tasks):
    sent = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(201, json={"task_count": len(tasks), "task_ids": list(range(len(tasks)))})

    sdk = LabelStudio(base_url="http://ls.test", api_key="legacy-token",
                      httpx_client=httpx.Client(transport=httpx.MockTransport(answer)))
    sdk.projects.import_tasks(1, request=tasks, return_task_ids=True)
    assert encode_tasks(tasks) == EncodedTasks(tasks).body == sent[0]
    assert EncodedTasks(tasks) == tasks

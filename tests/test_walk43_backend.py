"""A newcomer's walkthrough: the sync and the backend started with different ``LABELHUB_SECRET`` values (the README's
``export LABELHUB_SECRET=$(python -c "...token_urlsafe(32)")`` makes a new one in each shell).

- The fit's warning blamed ``LABELHUB_FILE_REPOS`` (set right): the advice that followed the URL was cut at 200
  characters, and each URL counted as a reason of its own (``... and 4 other reason(s)``). Now it says the URLs are
  signed with another ``LABELHUB_SECRET`` than the backend's, once, with one example URL (shortened) and the count.
- Restarted with the right secret, nothing was fitted until the next annotation: the trainer's start refit only
  projects that had a fit. Now a project that holds annotations and has none is fitted when the trainer starts.

Through the real parts: the Flask app in process, its trainer, local git repos of :mod:`tests.sample_repos` read by the
real :class:`labelhub.backend.media.MediaFetcher`, URLs signed by :func:`labelhub.signing.sign_url` as the sync signs.
"""
from __future__ import annotations

import logging

import pytest

from labelhub.backend.app import create_app
from labelhub.backend.errors import MediaNotAllowedError
from labelhub.backend.media import MediaFetcher
from labelhub.backend.settings import Settings
from labelhub.signing import sign_url
from tests import sample_repos
from tests.backend_fixtures import RedisServer, annotation_event, project_key

SYNC_SECRET = "labelhub-sync-secret-0123456789"
OTHER_SECRET = "labelhub-other-secret-987654321"
N = 6


@pytest.fixture
def signed_tasks(tmp_path):
    """A local repo ``images`` of 6 Fashion-MNIST PNGs and ``(repo, tasks, labels)``: tasks whose image is the file
    route's URL signed with :data:`SYNC_SECRET`, as the sync writes them."""
    files = sample_repos.image_files(0, N)
    labels = sample_repos.labels(N)
    repo = sample_repos.local_repo_with(tmp_path / "images", files)
    sha = sample_repos.git(repo, "rev-parse", "HEAD")
    tasks = [{"id": 1 + i, "data": {"image": sign_url("http://localhost:18433", SYNC_SECRET, "images", sha, path)}}
             for i, path in enumerate(sorted(files))]
    return repo, tasks, [labels[path] for path in sorted(files)]


@pytest.fixture
def redis_url(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield f"{server.url}/0"


def _app(tmp_path, repo, secret: str, redis: str | None = None):
    """The backend in process (its trainer not started): state in ``tmp_path/models``, or on Redis at ``redis``."""
    return create_app({"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False,
                       "secret": secret, "file_repos": (str(repo),), "image_embedder": "pixels",
                       **({"redis_url": redis} if redis else {})})


def test_a_url_signed_with_another_secret_says_so_when_the_repo_is_configured(signed_tasks, tmp_path):
    repo, tasks, _ = signed_tasks
    fetcher = MediaFetcher(Settings(model_dir=tmp_path / "m", secret=OTHER_SECRET, file_repos=(str(repo),)))
    with pytest.raises(MediaNotAllowedError) as refused:
        fetcher.fetch(tasks[0]["data"]["image"])
    message = str(refused.value)
    assert "signed with another LABELHUB_SECRET than this backend's: give the backend and the sync the same one" \
        in message, message
    assert "set LABELHUB_FILE_REPOS" not in message and "sig=" not in message and SYNC_SECRET not in message
    # the same secret reads it
    right = MediaFetcher(Settings(model_dir=tmp_path / "m", secret=SYNC_SECRET, file_repos=(str(repo),)))
    assert right.fetch(tasks[0]["data"]["image"]).startswith(b"\x89PNG")


def test_the_browsers_403s_of_urls_signed_with_another_secret_are_one_warning_naming_the_secret(signed_tasks, tmp_path,
                                                                                                caplog):
    """The file route answered each image of the page 403 ``bad signature`` at INFO only: one warning per worker and
    repo now says the likely cause."""
    from urllib.parse import urlsplit

    repo, tasks, _ = signed_tasks
    client = _app(tmp_path, repo, OTHER_SECRET).test_client()
    with caplog.at_level(logging.WARNING, logger="labelhub.backend.files"):
        for task in tasks:
            url = urlsplit(task["data"]["image"])
            assert client.get(f"{url.path}?{url.query}").status_code == 403
    said = [r.getMessage() for r in caplog.records if "another LABELHUB_SECRET" in r.getMessage()]
    assert len(said) == 1 and "'images'" in said[0], said
    assert SYNC_SECRET not in said[0] and OTHER_SECRET not in said[0] and "sig=" not in said[0]


@pytest.mark.parametrize("mode", ["files", "redis"])
def test_another_secret_is_named_once_with_the_count_then_the_right_one_fits_at_trainer_start(signed_tasks, tmp_path,
                                                                                              caplog, request, mode):
    caplog.set_level(logging.INFO, logger="labelhub")
    repo, tasks, labels = signed_tasks
    redis = request.getfixturevalue("redis_url") if mode == "redis" else None
    app = _app(tmp_path, repo, OTHER_SECRET, redis)
    client = app.test_client()
    for i, (task, label) in enumerate(zip(tasks, labels)):
        assert client.post("/webhook", json=annotation_event(9000 + i, task, label)).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    lines = [r.getMessage() for r in caplog.records if "examples without media" in r.getMessage()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"{N} of {N} examples without media ({N} examples: http://localhost:18433/files/images/" in line, line
    assert line.rstrip().endswith("give the backend and the sync the same one): not fitted, tried again at the next "
                                  "fit"), line  # the advice whole, one cause (not one per URL)
    assert "other cause" not in line and "other reason" not in line and "LABELHUB_FILE_REPOS (the repo)" not in line
    assert "sig=" not in line and SYNC_SECRET not in line and OTHER_SECRET not in line
    key = project_key()
    state = app.extensions["labelhub"].store.project(key)
    assert not state.kv().get("heads")  # nothing fitted
    assert len(state.load_annotations()["annotations"]) == N

    # restart with the sync's secret: the trainer's start fits the project, no new annotation needed
    caplog.clear()
    fixed = _app(tmp_path / "restarted" if redis else tmp_path, repo, SYNC_SECRET, redis)  # Redis: another host
    fixed.extensions["labelhub"].trainer.refit_changed()  # what the trainer does as it takes over
    kv = fixed.extensions["labelhub"].store.project(key).kv()
    assert kv.get("heads", {}).get("label", {}).get("file"), kv
    assert (kv.get("model_version") or "").startswith(f"labelhub-{N}-"), kv
    said = [r.getMessage() for r in caplog.records if "trainer start" in r.getMessage()]
    assert len(said) == 1 and f"{N} annotations" in said[0] and "no fit yet" in said[0], said
    assert not [r for r in caplog.records if "examples without media" in r.getMessage()]

    # the next start: fitted, so nothing said again and the version stays
    caplog.clear()
    again = _app(tmp_path / "restarted" if redis else tmp_path, repo, SYNC_SECRET, redis)
    again.extensions["labelhub"].trainer.refit_changed()
    assert not [r for r in caplog.records if "trainer start" in r.getMessage()]
    assert again.extensions["labelhub"].store.project(key).kv()["model_version"] == kv["model_version"]


def test_causes_are_counted_most_examples_first_and_the_rest_summed(tmp_path, caplog):
    from tests.test_predict_fit_reasons import fit_without_media

    # hosts not allowed (TEST-NETs): one cause per host
    line = fit_without_media(tmp_path, caplog, ["http://198.51.100.9/a.png",
                                                "http://203.0.113.7/" + "d/" * 60 + "c.png?token=s3cr3t",
                                                "http://203.0.113.7/b.png", "http://192.0.2.1/e.png"])
    short = "http://203.0.113.7/" + "d/" * 14 + "d..." + "d/" * 12 + "c.png"  # its first URL, in 80 characters
    assert (f"4 of 4 examples without media (2 examples: host '203.0.113.7' is not allowed: add it to "
            f"LABELHUB_ALLOWED_HOSTS to fetch {short}; 1 example: host '198.51.100.9'") in line, line
    assert "; and 1 other cause(s) of 1 example(s)): not fitted" in line, line
    assert "s3cr3t" not in line and "b.png" not in line and "e.png" not in line


def test_a_project_whose_label_config_has_no_head_is_not_warned_about_at_each_trainer_start(tmp_path, caplog):
    from tests.backend_fixtures import project_payload

    config = '<View><Text name="t" value="$text"/><Rating name="r" toName="t"/></View>'  # no head for Rating
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    event = annotation_event(1, {"id": 1, "data": {"text": "a plot"}}, "x",
                             project=project_payload(label_config=config))
    assert app.test_client().post("/webhook", json=event).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    state = app.extensions["labelhub"].store.project(project_key())
    assert state.kv().get("last_error") and state.load_annotations()["annotations"], state.kv()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="labelhub"):
        app.extensions["labelhub"].trainer.refit_changed()
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "project" in r.getMessage()], caplog.text

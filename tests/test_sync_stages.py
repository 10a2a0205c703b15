"""The pure stages of files → tasks: label config, globs, metadata, task payloads."""
import pytest

from labelhub.errors import LabelConfigError, LabelHubError
from labelhub.sync.files.selection import select_files
from labelhub.label_config import data_field
from labelhub.sync.files.metadata import MetadataSpec, MetadataTable
from labelhub.repos import RepoFile
from labelhub.sync.files.payloads import build_file_task
from tests import sample_repos

IMAGE_CONFIG = '<View><Image name="img" value="$image"/><Choices name="kind" toName="img">' \
               '<Choice value="text-only"/><Choice value="illustrated"/></Choices></View>'


def test_data_field_reads_the_value_key_of_the_image_tag():
    field = data_field(IMAGE_CONFIG)
    assert (field.tag, field.name, field.value_key, field.as_url) == ("Image", "img", "image", True)
    assert "*.png" in field.default_include and "*.PNG" in field.default_include


def test_text_tag_holds_the_text_unless_value_type_is_url():
    assert data_field('<View><Text name="t" value="$text"/></View>').as_url is False
    assert data_field('<View><Text name="t" value="$doc" valueType="url"/></View>').as_url is True


@pytest.mark.parametrize("config, reason", [
    ('<View><Image name="i" value="$image"></View>', "does not parse"),
    ('<View><Header value="hello"/></View>', "no Image, Audio, Video, Text or HyperText"),
])
def test_label_config_without_a_usable_object_tag_is_a_clear_error(config, reason):
    with pytest.raises(LabelConfigError, match=reason):
        data_field(config)


def test_select_files_applies_include_exclude_and_skips_bookkeeping():
    files = [RepoFile(p, 1, "0" * 40) for p in
             ["a/x.png", "a/y.jpg", "b/z.png", "README.md", "annotations/annotations.csv", "a/notes.txt"]]
    assert [f.path for f in select_files(files, ["*.png", "*.jpg"], ["b/*"])] == ["a/x.png", "a/y.jpg"]
    assert [f.path for f in select_files(files, None)] == ["a/notes.txt", "a/x.png", "a/y.jpg", "b/z.png"]


def test_metadata_join_by_the_third_path_part_from_the_end_without_header():
    csv = b'144133901,"Encyclopaedia Britannica, Volume 1"\n144133902,"Volume 2"\n'
    table = MetadataTable(csv, MetadataSpec("inventory.csv", -3, ("id", "meta")))
    path = "nls-data-encyclopaediaBritannica/144133901/image/188082865.3.jpg"
    assert table.columns_for(path) == {"id": "144133901", "meta": "Encyclopaedia Britannica, Volume 1"}
    assert table.columns_for("x/999/image/1.jpg") == {}
    assert table.columns_for("1.jpg") == {}


def test_metadata_keys_padded_with_spaces_match_and_a_semicolon_csv_is_named_in_the_warning():
    """Spaces around a key cell (a padded spreadsheet export) do not count; a CSV separated by ';' reads as one
    column, and the no-match warning says so (an audit was told only to check --metadata-key)."""
    table = MetadataTable(b"id,title\n 007 ,Bond\n", MetadataSpec("m.csv"))
    assert table.columns_for("x/007/image/1.png") == {"id": "007", "title": "Bond"}
    semicolons = MetadataTable(b"id;title\n007;Bond\n", MetadataSpec("m.csv"))
    assert semicolons.columns_for("x/007/image/1.png") == {}
    warning = semicolons.unmatched_warning()
    assert warning.endswith("it reads as one column: its separator looks like ';', save it with commas"), warning


def test_metadata_with_header_and_duplicate_keys_is_refused():
    with pytest.raises(LabelHubError, match="duplicate keys"):
        MetadataTable(b"id,title\n1,a\n1,b\n", MetadataSpec("m.csv"))


def test_build_task_never_lets_metadata_overwrite_identity_keys():
    task = build_file_task(data_field(IMAGE_CONFIG), "http://hub/x.png", "o/r", "x.png", "a" * 40,
                      {"hf_path": "evil", "title": "T"})
    assert task == {"data": {"title": "T", "image": "http://hub/x.png", "hf_repo": "o/r", "hf_path": "x.png",
                             "hf_revision": "a" * 40}}


def test_webhook_events_apply_in_any_order_and_deleted_tasks_leave_the_store(tmp_path):
    from labelhub.errors import InvalidEventError
    from labelhub.sync.annotations.intake import AnnotationIntake, parse_event
    from labelhub.sync.state import SyncState

    class Project:
        project_id = 1

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    intake = AnnotationIntake(Project(), state)

    def event(action, aid, updated, task=7):
        return parse_event({"action": action, "project": {"id": 1}, "task": {"id": task, "data": {"hf_path": "a"}},
                            "annotation": {"id": aid, "updated_at": updated, "result": [], "completed_by": {"id": 3}}}, 1)

    assert intake.apply_event(*event("ANNOTATION_UPDATED", 10, "2026-01-02")) == 1
    assert intake.apply_event(*event("ANNOTATION_CREATED", 10, "2026-01-01")) == 0  # late and older: ignored
    assert intake.apply_event(*event("ANNOTATION_CREATED", 11, "2026-01-01", task=8)) == 1
    assert [a["id"] for _, a in state.live_annotations()] == [10, 11]
    intake.apply_event(*parse_event({"action": "TASKS_DELETED", "tasks": [{"id": 8}]}, 1))
    intake.apply_event(*parse_event({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 10}]}, 1))
    assert state.live_annotations() == []
    assert intake.apply_event(*event("ANNOTATION_UPDATED", 10, "2026-01-03")) == 0  # deleted stays deleted
    for body, reason in [([], "not a JSON object"), ({"action": "X"}, "unknown action"),
                         ({"action": "TASKS_DELETED", "tasks": "x"}, "without a list"),
                         ({"action": "ANNOTATION_CREATED", "task": {"id": 1}}, "without annotation.id"),
                         ({"action": "ANNOTATION_CREATED", "project": {"id": 2}}, "not 1")]:
        with pytest.raises(InvalidEventError, match=reason):
            parse_event(body, 1)


def test_reconciliation_that_read_a_task_before_a_webhook_landed_loses_nothing(tmp_path):
    from labelhub.sync.state import SyncState

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    old = {"id": 1, "updated_at": "2026-01-01T00:00:01.000000Z", "result": []}
    new = {"id": 2, "updated_at": "2026-01-01T00:00:05.000000Z", "result": []}
    state.apply_annotations(7, [old], complete=True, as_of="2026-01-01T00:00:01.000000Z")
    state.apply_annotations(7, [new], complete=False)  # the webhook of annotation 2
    # a reconciliation whose read of task 7 predates annotation 2 must not delete it
    state.apply_annotations(7, [old], complete=True, as_of="2026-01-01T00:00:01.000000Z")
    assert sorted(a["id"] for _, a in state.live_annotations()) == [1, 2]
    # a later full read without annotation 1 (deleted at 00:00:09) removes it
    state.apply_annotations(7, [new], complete=True, as_of="2026-01-01T00:00:09.000000Z")
    assert [a["id"] for _, a in state.live_annotations()] == [2]
    # the truth brings back an annotation a stale tombstone hid; a webhook never does
    state.delete_annotations([2])
    state.apply_annotations(7, [new], complete=False)
    assert state.live_annotations() == []
    state.apply_annotations(7, [new], complete=True, as_of="2026-01-01T00:00:10.000000Z")
    assert [a["id"] for _, a in state.live_annotations()] == [2]


def test_annotators_known_only_by_id_from_webhooks_are_looked_up_once(tmp_path):
    from labelhub.sync.annotations.intake import AnnotationIntake, parse_event
    from labelhub.sync.state import SyncState

    class Project:
        project_id, calls = 1, 0

        def users(self):
            Project.calls += 1
            return {3: "ann@labelhub.test"}

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    intake = AnnotationIntake(Project(), state)
    intake.apply_event(*parse_event({"action": "ANNOTATION_CREATED", "task": {"id": 7, "data": {}}, "annotation": {
        "id": 10, "updated_at": "2026", "result": [], "completed_by": 3}}, 1))
    assert state.unknown_annotators() == {3}
    intake.learn_annotators()
    intake.learn_annotators()
    assert Project.calls == 1 and state.users() == {3: "ann@labelhub.test"} and not state.unknown_annotators()


def test_a_state_file_of_the_previous_layout_keeps_every_task_and_pending_import(tmp_path):
    import sqlite3

    from labelhub.sync.ledger import LABELS_SOURCE, ImportLedger
    from labelhub.sync.state import SyncState

    old = sqlite3.connect(tmp_path / "s.sqlite3")
    old.executescript("""
        CREATE TABLE tasks (project_id INTEGER, repo_id TEXT, hf_path TEXT, task_id INTEGER, hf_revision TEXT,
                            removed_in TEXT, PRIMARY KEY (project_id, repo_id, hf_path));
        CREATE TABLE pending_imports (project_id INTEGER, repo_id TEXT, hf_path TEXT, after_task_id INTEGER,
                                      PRIMARY KEY (project_id, repo_id, hf_path));
        CREATE TABLE label_import_tasks (project_id INTEGER, source_url TEXT, task_id INTEGER,
                                         PRIMARY KEY (project_id, source_url));
        CREATE TABLE label_import_pending (project_id INTEGER, source_url TEXT, after_task_id INTEGER,
                                           PRIMARY KEY (project_id, source_url));
        INSERT INTO tasks VALUES (1, 'o/r', 'a.png', 5, 'sha1', NULL), (1, 'o/r', 'b.png', 6, 'sha1', 'sha2');
        INSERT INTO pending_imports VALUES (1, 'o/r', 'c.png', 6);
        INSERT INTO label_import_tasks VALUES (1, 'https://x/1.png', 7);
        INSERT INTO label_import_pending VALUES (1, 'https://x/2.png', 7);
    """)
    old.commit()
    old.close()
    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    assert state.ledger.known() == {"a.png": None, "b.png": "sha2"}
    assert state.ledger.pending() == (["c.png"], 6)
    labels = ImportLedger(state.db, 1, LABELS_SOURCE)
    assert labels.task_ids(["https://x/1.png"]) == {"https://x/1.png": 7}
    assert labels.pending() == (["https://x/2.png"], 7) and labels.max_task_id() == 7
    state.close()
    assert SyncState(tmp_path / "s.sqlite3", 1, "o/r").ledger.count() == 2  # migrated once, opened again


def test_match_moves_pairs_same_blob_paths_in_path_order_and_leaves_the_rest_new():
    from labelhub.repos import RepoFile
    from labelhub.sync.files.importer import match_moves
    from labelhub.sync.ledger import Known

    known = {"a/1.png": Known(1, "s", None, "b1"), "a/2.png": Known(2, "s", None, "b2"),
             "a/3.png": Known(3, "s", None, ""), "a/4.png": Known(4, "s", None, "b1")}
    arrived = [RepoFile("z/x.png", 1, "b1"), RepoFile("b/1.png", 1, "b1"), RepoFile("b/new.png", 1, "b9"),
               RepoFile("c/3.png", 1, "b3"), RepoFile("d/copy.png", 1, "b2"), RepoFile("e/copy.png", 1, "b2")]
    moves, new = match_moves(list(known), arrived, known)
    assert [(old, f.path) for old, f in moves] == [("a/1.png", "b/1.png"), ("a/2.png", "d/copy.png"),
                                                   ("a/4.png", "z/x.png")]
    assert [f.path for f in new] == ["b/new.png", "c/3.png", "e/copy.png"]  # unknown blob ids never pair


def test_a_local_repo_follows_its_checked_out_branch_and_refuses_a_detached_head(tmp_path):
    from labelhub.errors import RevisionNotFound
    from labelhub.repos.git import LocalGitRepo

    repo = tmp_path / "r"
    repo.mkdir()
    sample_repos.git(repo, "init", "-q", "-b", "master")
    sha = sample_repos.commit_local(repo, {"a.txt": b"a"})
    assert LocalGitRepo(repo).default_revision() == "master"
    sample_repos.git(repo, "checkout", "-q", "--detach", sha)
    with pytest.raises(RevisionNotFound, match="detached"):
        LocalGitRepo(repo).default_revision()


def test_a_local_tag_that_exists_raises_tag_exists_and_keeps_its_commit(tmp_path):
    from labelhub.errors import TagExists
    from labelhub.repos.git import LocalGitRepo

    repo = tmp_path / "r"
    sample_repos.init_local_repo(repo)
    first = sample_repos.commit_local(repo, {"a.txt": b"a"})
    second = sample_repos.commit_local(repo, {"a.txt": b"b"})
    local = LocalGitRepo(repo)
    local.create_tag("v1", first, message="version 1")
    with pytest.raises(TagExists, match="v1"):
        local.create_tag("v1", second, message="version 1 again")
    assert local.tags() == {"v1": first}


def test_a_local_commit_lands_only_on_the_parent_it_was_made_on(tmp_path):
    from labelhub.errors import CommitConflict, RevisionNotFound
    from labelhub.repos.git import LocalGitRepo

    repo = tmp_path / "r"
    sample_repos.init_local_repo(repo)
    base = sample_repos.commit_local(repo, {"images/a.png": b"a", "README.md": b"# r"})
    local = LocalGitRepo(repo)
    sha = local.commit({"annotations.csv": b"id\n1\n", "versions/v1.json": b"{}"}, "annotations v1", "one", base)
    assert local.resolve("main") == sha
    assert sample_repos.git(repo, "show", "-s", "--format=%an <%ae>%n%P%n%B", sha).strip() == \
        f"LabelHub <labelhub@localhost>\n{base}\nannotations v1\n\none"
    listed = sample_repos.git(repo, "ls-tree", "-r", "--name-only", sha).split()
    assert listed == ["README.md", "annotations.csv", "images/a.png", "versions/v1.json"]
    assert sample_repos.git(repo, "show", f"{sha}:versions/v1.json") == "{}"
    with pytest.raises(CommitConflict, match="moved since"):  # someone else's commit came first
        local.commit({"annotations.csv": b"id\n2\n"}, "annotations v2", "", base)
    with pytest.raises(RevisionNotFound):
        local.commit({"annotations.csv": b"id\n2\n"}, "annotations v2", "", "0" * 40)
    assert local.resolve("main") == sha
    sample_repos.git(repo, "fsck", "--strict")


def test_the_loose_objects_of_the_exports_are_packed_every_so_many_commits(tmp_path, monkeypatch):
    """Each export wrote loose objects that nothing packed (no git process runs gc): 1,900 after 97 exports."""
    from labelhub.repos.git import LocalGitRepo

    repo = tmp_path / "r"
    sample_repos.init_local_repo(repo)
    head = sample_repos.commit_local(repo, {"images/a.png": b"a"})
    local = LocalGitRepo(repo)
    monkeypatch.setattr(LocalGitRepo, "PACK_EVERY", 3)

    def loose():
        counts = dict(line.split(": ") for line in sample_repos.git(repo, "count-objects", "-v").splitlines())
        return int(counts["count"])

    for n in range(1, 4):
        head = local.commit({"annotations.csv": f"id\n{n}\n".encode()}, f"annotations v{n}", "", head)
        assert (loose() == 0) == (n == 3), n
    assert sample_repos.git(repo, "show", f"{head}:annotations.csv").strip() == "id\n3"
    sample_repos.git(repo, "fsck", "--strict")


@pytest.mark.parametrize("config, level_byte", [
    ({}, 0x01),  # git's default for loose objects: zlib's best speed
    ({"core.compression": "9"}, 0xDA),
    ({"core.compression": "9", "core.looseCompression": "0"}, 0x01),  # 0 and 1 share zlib's "fastest" header
])
def test_an_export_compresses_its_loose_objects_at_the_level_git_would(tmp_path, config, level_byte):
    import zlib

    from labelhub.repos.git import LocalGitRepo
    from labelhub.sync.files.seen import git_blob_id

    repo = tmp_path / "r"
    sample_repos.init_local_repo(repo)
    base = sample_repos.commit_local(repo, {"a.txt": b"a"})
    for key, value in config.items():
        sample_repos.git(repo, "config", key, value)
    data = b"task_id,annotation_id\n" * 1000
    LocalGitRepo(repo).commit({"annotations.csv": data}, "annotations v1", "", base)
    blob = git_blob_id(data)
    loose = (repo / ".git" / "objects" / blob[:2] / blob[2:]).read_bytes()
    assert loose[1] == level_byte  # the zlib header's FLEVEL, as zlib writes it for the level
    assert zlib.decompress(loose).endswith(data)
    sample_repos.git(repo, "fsck", "--strict")


def test_a_bare_local_repo_gets_the_commit_and_the_tag(tmp_path):
    from labelhub.repos.git import LocalGitRepo

    source = tmp_path / "source"
    sample_repos.init_local_repo(source)
    head = sample_repos.commit_local(source, {"images/a.png": b"a"})
    sample_repos.git(tmp_path, "clone", "-q", "--bare", str(source), "bare")
    bare = LocalGitRepo(tmp_path / "bare")
    sha = bare.commit({"annotations/annotations.csv": b"id\n1\n"}, "annotations v1", "", head)
    bare.create_tag("annotations-v1", sha, message="annotations v1")
    assert bare.resolve("main") == sha and bare.tags() == {"annotations-v1": sha}
    sample_repos.git(tmp_path / "bare", "fsck", "--strict")


def test_a_second_sync_of_one_project_and_state_is_refused_while_the_first_runs(label_studio, make_project,
                                                                              tmp_path):
    """Two syncs of one project and state (a --once beside the daemon) would both import the files without a task."""
    from labelhub.locks import file_lock
    from tests.conftest import run_labelhub
    from tests.test_sync_export import CONFIG

    repo = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 1))
    project = make_project("one sync at a time", CONFIG)
    state = tmp_path / "sync.sqlite3"
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    with file_lock(tmp_path / f"sync.sqlite3.{project.id}.lock") as held:  # what a running sync of it holds
        assert held
        proc = run_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--state", str(state),
                            "--once", env=env, timeout=120)
    assert proc.returncode == 1 and f"import-labels or restore of project {project.id} runs" in proc.stderr, \
        proc.stderr
    assert "Usage:" not in proc.stderr  # a runtime condition, not a usage error

"""Regression tests of the fifth fuzzing audit's findings (scripts under /tmp/audit-fuzz/): the parsers of a dataset
owner's README.md front matter, a metadata CSV, hand-edited manifests and CSVs of tagged versions, ``--url-lifetime``,
``--filter`` and the backend's notes of missed webhooks.

No server: fake repos (``read_file``/``tags``) and plain inputs."""
from __future__ import annotations

import csv
import io
import json
import logging
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from labelhub.errors import LabelHubError

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
SHA = "a" * 40
BLOCK = "<!-- labelhub:begin -->\n## Annotations\n<!-- labelhub:end -->"


# 1. README.md front matter ---------------------------------------------------------------------------------------
def _card(existing, commit=SHA):
    from datasets import ClassLabel, Features, Value
    from labelhub.sync.versions.card import dataset_card

    features = Features({"label": ClassLabel(names=["a", "b"]), "hf_path": Value("string")})
    return dataset_card(existing, "annotations/annotations.csv", BLOCK, ["annotations/train.jsonl"],
                        features=features, rows_path="annotations/annotations.jsonl", version="v1", commit=commit)


def _assert_readme_error(exc: LabelHubError, commit=SHA):
    text = str(exc)
    assert "\n" not in text and text.startswith(f"README.md at {commit[:12]}: "), text
    assert "nothing is lost" in text and "waits until it is fixed" in text, text


@pytest.mark.parametrize("front, why", [
    ("pretty_name: Fashion MNIST: my labels\nlicense: mit", "mapping values are not allowed here (line 2, column 27)"),
    ("configs: default", "`configs` str 'default', not a list of mappings"),
    ("configs: 3", "`configs` int 3"),
    ("dataset_info: 3", "`dataset_info` int 3"),
    ("dataset_info:\n  features:\n  - name: x\n    dtype: string\n  config_name: [1]",
     "`config_name` in `dataset_info` that is not a string"),
    ("- a list", "is not a mapping"),
])
def test_a_bad_front_matter_is_one_line_naming_readme_the_commit_and_why(front, why):
    """Finding 1: a YAML typo, or ``configs``/``dataset_info`` that are not lists of mappings, is refused with one
    line naming README.md, the commit and the reason; ``configs: default`` no longer makes configs d, e, f..."""
    with pytest.raises(LabelHubError) as raised:
        _card(f"---\n{front}\n---\n# My data\n")
    _assert_readme_error(raised.value)
    assert why in str(raised.value)


yaml_lines = st.sampled_from([
    "configs: 5", "configs: x", "configs:\n- 1\n- [a]", "configs:\n- config_name: 7", "dataset_info: 3",
    "dataset_info:\n- 1", "license: [", "a: b: c", "key: 'unterminated", "- just a list",
    "tags: !!python/object:os.system x", "{}", "", "x: &a [*a]", "\t- tab", "configs: null", "1: 2",
    "? [a, b]\n: c", "dataset_info:\n  features:\n  - name: x\n    dtype: string\n  config_name: [1]",
    "configs: {a: 1}", "configs:\n  - config_name: default\n    default: yes", "[" * 2000,
]) | st.text(max_size=30)
cards = st.builds(lambda ls, body, close: "---\n" + "\n".join(ls) + ("\n---\n" if close else "\n") + body,
                  st.lists(yaml_lines, max_size=3), st.text(max_size=30), st.booleans()) | st.text(max_size=60)


@PROPERTY
@given(card=cards)
def test_any_front_matter_is_a_card_or_the_one_line_readme_error(card):
    """Finding 1 (property): any README text makes a card whose configs are a list of mappings, or the documented
    one-line error; never another exception. Reading the previous label set never raises."""
    from huggingface_hub import DatasetCard
    from labelhub.sync.versions.card import card_class_names

    assert isinstance(card_class_names(card), dict)
    try:
        made = _card(card)
    except LabelHubError as exc:
        _assert_readme_error(exc)
        return
    configs = DatasetCard(made).data.configs
    assert isinstance(configs, list) and all(isinstance(c, dict) for c in configs)


def test_a_readme_that_is_not_utf8_is_refused_not_rewritten():
    """Finding 1: the exporter decodes README.md with errors="replace" (no UnicodeDecodeError), and refuses to
    rebuild the card from a text whose characters became U+FFFD."""
    from labelhub.sync.versions.card import card_text

    assert card_text("---\nlicense: mit\n---\n# Données\n".encode()) .endswith("Données\n")
    with pytest.raises(LabelHubError) as raised:
        card_text("---\nlicense: mit\n---\n# Donn\u00e9es\n".encode("latin-1"), SHA)
    _assert_readme_error(raised.value)
    assert "is not UTF-8 text (byte 0xe9" in str(raised.value)


def test_the_exporter_reads_the_previous_card_without_a_unicode_error():
    """Finding 1 (exporter.py ``_previous_card``): a Latin-1 README at the parent commit is the one-line error."""
    from labelhub.sync.versions.exporter import Exporter

    exporter = object.__new__(Exporter)
    exporter.state = SimpleNamespace(cursor=lambda *a: None, last_tagged_commit=lambda: "b" * 40)
    exporter.repo = SimpleNamespace(repo_id="o/r", read_file=lambda sha, path: "# Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(LabelHubError) as raised:
        exporter._previous_card(SHA)
    _assert_readme_error(raised.value)


# 2. metadata CSV -------------------------------------------------------------------------------------------------
def test_a_trailing_comma_keeps_the_key_column():
    """Finding 2: rows with one field more than the header (a trailing comma) keep their first field as the key."""
    from labelhub.sync.files.metadata import MetadataSpec, MetadataTable

    table = MetadataTable(b"id,title\n144133901,Vol 1,\n144133902,Vol 2,\n", MetadataSpec("inventory.csv", -3))
    assert table.columns_for("enc/144133901/image/1.jpg") == {"id": "144133901", "title": "Vol 1"}


def test_a_metadata_parse_error_is_one_line():
    """Finding 2: the parse error's message has no newline (pandas' ends with one)."""
    from labelhub.sync.files.metadata import MetadataSpec, MetadataTable

    with pytest.raises(LabelHubError) as raised:
        MetadataTable(b"id,meta\n1,a,b\n2,c,d\n", MetadataSpec("meta.csv", -3, ("id",)))
    assert "\n" not in str(raised.value) and str(raised.value).startswith("metadata CSV meta.csv does not parse")


# 3./4. hand-edited manifests and CSVs ------------------------------------------------------------------------------
class _Repo:
    """Two tags; the manifest and the CSVs as given."""
    repo_id, local = "o/r", True
    HEAD = b"task_id,annotation_id,hf_path,kind,was_cancelled,annotator\n"

    def __init__(self, manifest=b'{"controls": {"kind": "Choices"}}', old=None, new=None):
        self.manifest = manifest
        self.csvs = {"a" * 40: old or self.HEAD + b"1,1,a.png,Bag,False,x\n",
                     "b" * 40: new or self.HEAD + b"1,1,a.png,Bag,False,x\n"}

    def tags(self):
        return {"annotations-v1": "a" * 40, "annotations-v2": "b" * 40}

    def read_file(self, sha, path):
        return self.manifest if path.endswith("manifest.json") else self.csvs[sha]

    def commit_info(self, sha):
        return "t", "annotations v1: +1"


DEEP = b"[" * 100000 + b"]" * 100000


@pytest.mark.parametrize("manifest", [b'{"tag": "annotations-v1", "counts": null}', b"3", b"null", DEEP,
                                      b'{"counts": {"annotations": null, "added": [1]}, "created_at": {"a": 1}}'])
def test_versions_lists_a_hand_edited_manifest_as_unknown_counts(manifest):
    """Finding 3: ``labelhub versions`` shows ``?`` for what a manifest (not an object, ``counts: null``, nested too
    deeply, fields that are not numbers) cannot give, instead of a traceback."""
    from labelhub.sync.cli import versions_line
    from labelhub.sync.versions.listing import list_versions

    rows = list_versions(_Repo(manifest))
    assert [r["tag"] for r in rows] == ["annotations-v1", "annotations-v2"]
    assert rows[0]["annotations"] == "?" and rows[0]["added"] == "?" and rows[0]["created_at"] == ""
    versions_line(rows[0])


def test_diff_reads_a_deeply_nested_manifest_as_none():
    """Finding 3: a manifest nested too deeply (RecursionError in json) is read as none by ``labelhub diff``."""
    from labelhub.sync.versions.diff import diff_versions

    assert diff_versions(_Repo(DEEP), "annotations-v1", "annotations-v2").added == 0


@pytest.mark.parametrize("new, why", [
    (_Repo.HEAD + b"1,1,a.png,Bag,False,x\n1,1,a.png,Bag,False,x\n", "annotation_id 1 is in more than one row"),
    (_Repo.HEAD + b"1,1,a.png,Caf\xe9,False,x\n", "not UTF-8 text"),
    (b"task_id,hf_path\n1,a.png\n", "no annotation_id column"),
    (b"\n", "empty"),
])
def test_diff_says_which_csv_of_which_tag_cannot_be_compared(new, why):
    """Finding 3: a hand-edited CSV (a row pasted twice, Latin-1, no annotation_id column, empty) is one
    LabelHubError ``<csv_path> at <tag>: why``."""
    from labelhub.sync.versions.diff import diff_versions

    with pytest.raises(LabelHubError) as raised:
        diff_versions(_Repo(new=new), "annotations-v1", "annotations-v2")
    text = str(raised.value)
    assert text.startswith("annotations/annotations.csv at annotations-v2: ") and why in text and "\n" not in text


def _table(rows, head):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(head)
    writer.writerows(rows)
    return out.getvalue().encode()


HEAD = ["task_id", "annotation_id", "hf_path", "kind", "was_cancelled", "annotator"]
cells = st.text(max_size=6) | st.sampled_from(["", "1", "nan", "a|b", "[]", '[{"label": 1}]', "null"])
rows = st.lists(st.tuples(st.sampled_from(["1", "2", ""]), st.sampled_from(["1", "2", "", "x"]), st.just("a.png"),
                          cells, st.sampled_from(["False", "True"]), st.just("a@x")), max_size=4)
tables = st.builds(_table, rows, st.sampled_from([HEAD, HEAD[:2], ["x"]])) | st.binary(max_size=40)


@PROPERTY
@given(old=tables, new=tables)
def test_any_two_version_csvs_diff_or_say_why_in_one_line(old, new):
    """Finding 3 (property): two hand-edited CSVs give a diff or a one-line LabelHubError naming the CSV."""
    from labelhub.sync.versions.diff import diff_versions, summary_text

    try:
        summary_text(diff_versions(_Repo(old=old, new=new), "annotations-v1", "annotations-v2"))
    except LabelHubError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("annotations/annotations.csv at annotations-v")


def _owner_exporter(manifest: bytes):
    from labelhub.sync.versions.exporter import Exporter
    from labelhub.sync.versions.series import series_for

    exporter = object.__new__(Exporter)
    exporter.repo, exporter.series = _Repo(manifest), series_for("annotations/annotations.csv", None)
    exporter.csv_path, exporter.manifest_path = exporter.series.csv_path, exporter.series.manifest_path
    exporter.take_over_from = None
    exporter.project = SimpleNamespace(project_id=1, url="http://ls", key="1.1700000001",
                                       client=SimpleNamespace(projects=SimpleNamespace(get=None)),
                                       call=lambda f, *a: None)
    return exporter


@pytest.mark.parametrize("section", ['["/", 1]', '"x"', "3"])
def test_the_series_check_reads_a_label_studio_section_that_is_no_object_as_none(section):
    """Finding 4: a newest tag's manifest whose ``label_studio`` is not an object is read as having none (as
    ``labelhub diff`` does), not an AttributeError at every tick."""
    manifest = f'{{"tag": "annotations-v1", "label_studio": {section}}}'.encode()
    assert _owner_exporter(manifest)._owner_manifest("annotations-v1", SHA)["label_studio"] == {}


def test_the_series_check_reads_a_deeply_nested_manifest_as_unparsed():
    """Finding 3 (exporter.py ``_owner_manifest``): nested too deeply is an edited file, read as ``{}``."""
    assert _owner_exporter(DEEP)._owner_manifest("annotations-v1", SHA) == {}


# 5. --url-lifetime -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["9" * 400, "9" * 400 + "d", "9" * 310 + ".5h", float("inf")])
def test_an_overflowing_lifetime_is_a_value_error(value):
    """Finding 5: a lifetime beyond a float's range, or not finite, is a ValueError (``--url-lifetime``'s
    BadParameter), not an OverflowError traceback; the 400 digits are not echoed."""
    from labelhub.file_urls import parse_lifetime

    with pytest.raises(ValueError) as raised:
        parse_lifetime(value)
    assert "9" * 50 not in str(raised.value)


@PROPERTY
@given(value=st.from_regex(r"[0-9]{1,400}(\.[0-9]{1,3})?\s*[smhd]?", fullmatch=True) | st.floats() | st.integers())
def test_any_lifetime_is_seconds_or_a_value_error(value):
    """Finding 5 (property): whole seconds, or a ValueError."""
    from labelhub.file_urls import parse_lifetime

    try:
        assert parse_lifetime(value) >= 0
    except ValueError:
        pass


# 6. --filter -----------------------------------------------------------------------------------------------------
def test_a_deeply_nested_filter_says_it_is_not_json():
    """Finding 6: ``--filter`` nested too deeply says ``--filter is not JSON``, not a RecursionError."""
    from labelhub.backend.labelstudio_api import data_manager_filters

    with pytest.raises(ValueError, match=r"^--filter is not JSON \(too deep"):
        data_manager_filters("[" * 100000)


# 7. notes of missed webhooks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["[1, 2]", "3", "[" * 100000])
def test_note_missed_never_raises_on_a_note_that_is_no_object(tmp_path, caplog, text):
    """Finding 7: ``note_missed`` keeps its promise (never raises) when the note holds a JSON list, a number or
    JSON nested too deeply: the note is started again; ``requeue_missed`` then queues it."""
    from labelhub.backend.missed_events import MISSED_DIR, note_missed, requeue_missed

    folder = tmp_path / MISSED_DIR
    folder.mkdir(parents=True)
    (folder / "7.json").write_text(text)
    with caplog.at_level(logging.WARNING):
        note_missed(tmp_path, "7", 7, OSError("redis down"))
    note = json.loads((folder / "7.json").read_text())
    assert note["refused"] == 1 and note["project"] == 7
    queued = []
    assert requeue_missed(tmp_path, SimpleNamespace(put=lambda *a: queued.append(a))) == 1
    assert queued[0][1]["project"] == 7


def test_requeue_missed_removes_a_note_that_is_no_object(tmp_path):
    """Finding 7 (its reader): a note holding a JSON list is said and removed, not an AttributeError."""
    from labelhub.backend.missed_events import MISSED_DIR, requeue_missed

    folder = tmp_path / MISSED_DIR
    folder.mkdir(parents=True)
    (folder / "7.json").write_text("[1]")
    assert requeue_missed(tmp_path, SimpleNamespace(put=lambda *a: None)) == 0
    assert not (folder / "7.json").exists()

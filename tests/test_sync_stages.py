"""The pure stages of files → tasks: label config, globs, metadata, task payloads."""
import pytest

from sync.errors import LabelConfigError, SyncError
from sync.files import select_files
from sync.label_config import data_field
from sync.metadata import MetadataSpec, MetadataTable
from sync.repo import RepoFile
from sync.tasks import build_task

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


def test_metadata_with_header_and_duplicate_keys_is_refused():
    with pytest.raises(SyncError, match="duplicate keys"):
        MetadataTable(b"id,title\n1,a\n1,b\n", MetadataSpec("m.csv"))


def test_build_task_never_lets_metadata_overwrite_identity_keys():
    task = build_task(data_field(IMAGE_CONFIG), "http://hub/x.png", "o/r", "x.png", "a" * 40,
                      {"hf_path": "evil", "title": "T"})
    assert task == {"data": {"title": "T", "image": "http://hub/x.png", "hf_repo": "o/r", "hf_path": "x.png",
                             "hf_revision": "a" * 40}}

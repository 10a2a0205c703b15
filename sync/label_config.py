"""What the sync reads from a project's label config: the object tag a file fills.

Parsed with label-studio-sdk's ``LabelInterface`` (tags: https://labelstud.io/tags/). A task's
data key is the object tag's ``value`` without its ``$`` (``<Image value="$image"/>`` → ``image``).
"""
from __future__ import annotations

from dataclasses import dataclass

from sync.errors import LabelConfigError

#: Object tags whose data is the file's URL.
URL_TAGS = ("Image", "Audio", "AudioPlus", "Video")
#: Object tags whose data is the file's text, unless ``valueType="url"``.
TEXT_TAGS = ("Text", "HyperText")

#: Default ``--include`` patterns per object tag (matched with both cases of the extension).
DEFAULT_INCLUDE = {
    "Image": ("*.jpg", "*.jpeg", "*.png", "*.gif", "*.bmp", "*.webp", "*.tif", "*.tiff"),
    "Audio": ("*.wav", "*.mp3", "*.flac", "*.ogg", "*.m4a"),
    "AudioPlus": ("*.wav", "*.mp3", "*.flac", "*.ogg", "*.m4a"),
    "Video": ("*.mp4", "*.webm", "*.mov"),
    "Text": ("*.txt",),
    "HyperText": ("*.html", "*.htm"),
}


@dataclass(frozen=True)
class DataField:
    """The object tag a repo file fills.

    Attributes:
        tag: the object tag's type, e.g. ``"Image"`` or ``"Text"``.
        name: its ``name`` attribute (what control tags point at with ``toName``).
        value_key: the task data key (``"image"`` for ``value="$image"``).
        as_url: ``True`` when the data holds the file's URL, ``False`` when it holds its text.
    """

    tag: str
    name: str
    value_key: str
    as_url: bool

    @property
    def default_include(self) -> tuple[str, ...]:
        """The default ``--include`` globs for this tag (lower and upper case extensions)."""
        patterns = DEFAULT_INCLUDE.get(self.tag, ("*",))
        return tuple(p for pattern in patterns for p in (pattern, pattern.upper()))


def data_field(label_config: str) -> DataField:
    """Find the first object tag of ``label_config`` that a repo file can fill.

    Args:
        label_config: the project's label config XML.

    Returns:
        The :class:`DataField` of the first Image, Audio, Video, Text or HyperText tag whose
        ``value`` is a ``$variable``.

    Raises:
        LabelConfigError: the XML does not parse, or it has no such object tag.
    """
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(label_config)
    except Exception as exc:  # the SDK raises several XML and validation error types
        raise LabelConfigError(f"the project's label config does not parse: {exc}") from None
    for obj in interface.objects:
        value = obj.attr.get("value", "")
        if obj.tag in URL_TAGS + TEXT_TAGS and value.startswith("$") and len(value) > 1:
            as_url = obj.tag in URL_TAGS or obj.attr.get("valueType") == "url"
            return DataField(obj.tag, obj.name, value[1:], as_url)
    tags = ", ".join(sorted({obj.tag for obj in interface.objects})) or "none"
    raise LabelConfigError("the project's label config has no Image, Audio, Video, Text or HyperText "
                           f"tag with value=\"$...\" (object tags found: {tags})")


def control_tags(label_config: str) -> dict[str, str]:
    """``{from_name: control tag type}`` of the label config's control tags, in config order
    (e.g. ``{"kind": "Choices", "box": "RectangleLabels"}``).

    Raises:
        LabelConfigError: the XML does not parse.
    """
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(label_config)
    except Exception as exc:
        raise LabelConfigError(f"the project's label config does not parse: {exc}") from None
    return {control.name: control.tag for control in interface.controls}

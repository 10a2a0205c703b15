"""Parse a Label Studio label config (XML) into its control tags and object tags.

A label config pairs *control tags* (``<Choices name="label" toName="image">``) with *object tags*
(``<Image name="image" value="$image"/>``): a result's ``from_name`` is the control tag's ``name``,
``to_name`` the object tag's ``name``, and the object tag's ``value`` (``$image``) names the key of
the task's ``data`` (``image``). Format: https://labelstud.io/tags/ (Choices:
https://labelstud.io/tags/choices, Image: https://labelstud.io/tags/image, Text:
https://labelstud.io/tags/text) and https://labelstud.io/guide/setup.

Python's expat (2.4.1 and newer, bundled with CPython 3.11) refuses entity-expansion bombs, so the
standard library parser is safe for configs that come from Label Studio.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from backend.errors import UnsupportedLabelConfigError

__all__ = ["ControlTag", "ObjectTag", "ChoicesSpec", "parse_label_config", "parsed_label_config",
           "choices_spec", "OBJECT_TAGS", "CONTROL_TAGS"]

#: Object tags (what is labeled), lower-cased; see https://labelstud.io/tags/.
OBJECT_TAGS = {"image", "text", "hypertext", "audio", "audioplus", "video", "paragraphs", "timeseries",
               "table", "pdf", "markdown", "list", "ranker"}
#: Control tags (how it is labeled), lower-cased; see https://labelstud.io/tags/.
CONTROL_TAGS = {"choices", "labels", "rectanglelabels", "polygonlabels", "keypointlabels", "brushlabels",
                "ellipselabels", "hypertextlabels", "paragraphlabels", "timeserieslabels", "videorectangle",
                "rectangle", "polygon", "keypoint", "brush", "ellipse", "textarea", "rating", "number",
                "datetime", "taxonomy", "pairwise", "relations", "ranker", "magicwand", "bitmasklabels"}


@dataclass(frozen=True)
class ObjectTag:
    """An object tag such as ``<Image name="image" value="$image"/>``.

    Attributes:
        tag: The tag name as written (``Image``).
        name: Its ``name`` attribute, the ``to_name`` of results.
        value: The task data key without ``$`` (``image``), or ``""`` for a constant value.
        value_type: The ``valueType`` attribute (``Text`` supports ``url``), lower-cased, or ``""``.
    """

    tag: str
    name: str
    value: str
    value_type: str = ""


@dataclass(frozen=True)
class ControlTag:
    """A control tag such as ``<Choices name="label" toName="image" choice="single">``.

    Attributes:
        tag: The tag name as written (``Choices``).
        name: Its ``name`` attribute, the ``from_name`` of results.
        to_name: The names in its ``toName`` attribute (comma-separated in the XML).
        labels: The values of its ``<Choice>``/``<Label>`` children (their ``alias`` when set, since
            Label Studio stores the alias in results).
        attrs: All its XML attributes.
    """

    tag: str
    name: str
    to_name: tuple[str, ...]
    labels: tuple[str, ...]
    attrs: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ChoicesSpec:
    """What the default model needs: one Choices tag over one Image or Text tag.

    Attributes:
        from_name: The Choices tag's ``name``.
        to_name: The object tag's ``name``.
        object_type: ``"image"`` or ``"text"``.
        value_key: The key of the task's ``data`` holding the image URL or the text.
        labels: The choices, in config order.
        multiple: ``True`` for ``choice="multiple"``.
        text_is_url: ``True`` for ``<Text valueType="url">`` (the text is fetched from the URL).
    """

    from_name: str
    to_name: str
    object_type: str
    value_key: str
    labels: tuple[str, ...]
    multiple: bool = False
    text_is_url: bool = False


def _parse_xml(label_config: str) -> ET.Element:
    if not isinstance(label_config, str) or not label_config.strip():
        raise UnsupportedLabelConfigError("the label config is empty")
    try:
        return ET.fromstring(label_config)
    except ET.ParseError as exc:
        raise UnsupportedLabelConfigError(f"the label config is not valid XML: {exc}") from None


def parse_label_config(label_config: str) -> tuple[list[ControlTag], dict[str, ObjectTag]]:
    """Find the control tags and object tags of a label config.

    Args:
        label_config: The XML, as in ``project.label_config`` or the ``schema`` field of ``/setup``.

    Returns:
        ``(controls, objects)``: the control tags in document order, and the object tags by ``name``.

    Raises:
        UnsupportedLabelConfigError: When the XML is empty or does not parse.

    Example:
        >>> controls, objects = parse_label_config(
        ...     '<View><Image name="img" value="$image"/>'
        ...     '<Choices name="label" toName="img"><Choice value="Cat"/></Choices></View>')
        >>> controls[0].name, controls[0].to_name, objects["img"].value
        ('label', ('img',), 'image')
    """
    root = _parse_xml(label_config)
    controls: list[ControlTag] = []
    objects: dict[str, ObjectTag] = {}
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        tag = el.tag.lower()
        name = el.get("name")
        if tag in OBJECT_TAGS and name and el.get("value") is not None:
            value = el.get("value", "")
            objects[name] = ObjectTag(tag=el.tag, name=name, value=value[1:] if value.startswith("$") else "",
                                      value_type=(el.get("valueType") or "").lower())
        elif tag in CONTROL_TAGS and name:
            to_name = tuple(n.strip() for n in (el.get("toName") or "").split(",") if n.strip())
            labels = tuple(child.get("alias") or child.get("value") for child in el.iter()
                           if child is not el and isinstance(child.tag, str)
                           and child.tag.lower() in ("choice", "label") and child.get("value") is not None)
            controls.append(ControlTag(tag=el.tag, name=name, to_name=to_name, labels=labels, attrs=dict(el.attrib)))
    return controls, objects


def parsed_label_config(label_config: str) -> dict:
    """The label config in label-studio-ml's ``parsed_label_config`` shape.

    Args:
        label_config: The XML.

    Returns:
        ``{from_name: {"type": tag, "to_name": [...], "inputs": [{"type": tag, "value": key}],
        "labels": [...], "labels_attrs": {}}}`` for each control tag, the shape label-studio-ml
        models read (``label_studio_sdk``'s ``parse_config``).

    Raises:
        UnsupportedLabelConfigError: When the XML does not parse.
    """
    controls, objects = parse_label_config(label_config)
    out = {}
    for c in controls:
        out[c.name] = {
            "type": c.tag,
            "to_name": list(c.to_name),
            "inputs": [{"type": objects[n].tag, "value": objects[n].value} for n in c.to_name if n in objects],
            "labels": list(c.labels),
            "labels_attrs": {},
        }
    return out


def choices_spec(label_config: str) -> ChoicesSpec:
    """Pick the first ``<Choices>`` over an ``<Image>`` or ``<Text>`` tag.

    Args:
        label_config: The XML.

    Returns:
        A :class:`ChoicesSpec`.

    Raises:
        UnsupportedLabelConfigError: When the XML does not parse, or has no Choices tag over an Image or
            Text tag with a ``$key`` value and at least two choices; the message says what it found.
    """
    controls, objects = parse_label_config(label_config)
    found = []
    for c in controls:
        targets = [objects[n] for n in c.to_name if n in objects]
        found.append(f"<{c.tag} name={c.name!r}> over " + (", ".join(f"<{o.tag}>" for o in targets) or "nothing"))
        if c.tag.lower() != "choices":
            continue
        for obj in targets:
            if obj.tag.lower() in ("image", "text", "hypertext") and obj.value:
                if len(c.labels) < 2:
                    raise UnsupportedLabelConfigError(
                        f"<Choices name={c.name!r}> needs at least two <Choice> values, it has {len(c.labels)}")
                object_type = "image" if obj.tag.lower() == "image" else "text"
                return ChoicesSpec(
                    from_name=c.name, to_name=obj.name, object_type=object_type, value_key=obj.value,
                    labels=c.labels, multiple=(c.attrs.get("choice") or "single").lower() == "multiple",
                    text_is_url=object_type == "text" and obj.value_type == "url")
    raise UnsupportedLabelConfigError(
        "the default model supports a <Choices> tag over an <Image> or <Text> tag with a $value; "
        "this label config has " + ("; ".join(found) if found else "no control tag"),
        supported="Choices over Image or Text")

"""The one reader of Label Studio label configs, on label-studio-sdk's ``LabelInterface``.

A label config pairs *control tags* (``<Choices name="label" toName="image">``) with *object tags*
(``<Image name="image" value="$image"/>``): a result's ``from_name`` is the control tag's ``name``,
``to_name`` the object tag's ``name``, and the object tag's ``value`` (``$image``) names the key of the
task's ``data`` (``image``). Tags: https://labelstud.io/tags/; parser:
``label_studio_sdk/label_interface/interface.py`` (https://github.com/HumanSignal/label-studio-sdk).

Who asks what:

- the backend: :func:`parse_label_config` (every control and object tag), :func:`parsed_label_config`
  (label-studio-ml's shape, for models written for it), :func:`choices_spec` (the default model),
  :func:`prediction_errors` (a prediction job's check before it writes), :func:`choice_conditions` (the controls
  shown only while a choice is selected);
- the sync: :func:`data_field` (the object tag a repo file fills), :func:`task_data_keys` (every key Label Studio
  requires in a task's data) and :func:`control_tags`.

A config is parsed once per distinct XML (an LRU of 128 configs, :mod:`cachetools`); the answers are
immutable. Every function raises :class:`labelhub.errors.LabelConfigError` (a ``ValueError``) with
what it found when the config does not parse or lacks what the caller needs.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, cached

from labelhub.errors import LabelConfigError
from labelhub.redaction import one_line

__all__ = ["ObjectTag", "ControlTag", "ChoicesSpec", "ControlSpec", "DataField", "parse_label_config",
           "parsed_label_config", "prediction_errors", "choices_spec", "control_specs", "data_field", "task_data_keys",
           "control_tags", "data_value", "ChoiceCondition", "choice_conditions",
           "URL_TAGS", "TEXT_TAGS", "DEFAULT_INCLUDE", "REPEATER_PLACEHOLDER"]

#: Object tags whose task data is a file's URL.
URL_TAGS = ("Image", "Audio", "AudioPlus", "Video")
#: Object tags whose task data is a file's text, unless ``valueType="url"``.
TEXT_TAGS = ("Text", "HyperText")
#: An ``indexFlag`` placeholder of a ``<Repeater>`` (``{{idx}}``, https://labelstud.io/tags/repeater) in a tag's
#: name or value: Label Studio's editor replaces it with each item's index (``c_{{idx}}`` becomes ``c_0``, ``c_1``).
REPEATER_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
#: Default ``--include`` globs per object tag (matched with both cases of the extension).
DEFAULT_INCLUDE = {
    "Image": ("*.jpg", "*.jpeg", "*.png", "*.gif", "*.bmp", "*.webp", "*.tif", "*.tiff"),
    "Audio": ("*.wav", "*.mp3", "*.flac", "*.ogg", "*.m4a"),
    "AudioPlus": ("*.wav", "*.mp3", "*.flac", "*.ogg", "*.m4a"),
    "Video": ("*.mp4", "*.webm", "*.mov"),
    "Text": ("*.txt",),
    "HyperText": ("*.html", "*.htm"),
}


@dataclass(frozen=True)
class ObjectTag:
    """An object tag such as ``<Image name="image" value="$image"/>``.

    Attributes:
        tag: The tag name as Label Studio spells it (``Image``).
        name: Its ``name`` attribute, the ``to_name`` of results.
        value: The task data key without ``$`` (``image``), or ``""`` for a constant value.
        value_type: The ``valueType`` attribute (``Text`` supports ``url``), lower-cased, or ``""``.
        value_list: The ``valueList`` attribute as written (``$pages``: a list of files in one task, the multi-page
            ``<Image>``), or ``""``.
        encoding: The ``encoding`` attribute of a ``<Text>`` (``base64``, ``base64unicode``: the task holds the text
            encoded, and Label Studio's editor shows and counts offsets in the decoded text;
            https://labelstud.io/tags/text), lower-cased, or ``""``.
    """

    tag: str
    name: str
    value: str
    value_type: str = ""
    value_list: str = ""
    encoding: str = ""


@dataclass(frozen=True)
class ControlTag:
    """A control tag such as ``<Choices name="label" toName="image" choice="single">``.

    Attributes:
        tag: The tag name as Label Studio spells it (``Choices``).
        name: Its ``name`` attribute, the ``from_name`` of results.
        to_name: The names in its ``toName`` attribute.
        labels: The values of its ``<Choice>``/``<Label>`` children (their ``alias`` when set, since Label
            Studio stores the alias in results).
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
        text_encoding: A ``<Text>``'s ``encoding`` (``base64``, ``base64unicode``: :attr:`ObjectTag.encoding`), or
            ``""``.
    """

    from_name: str
    to_name: str
    object_type: str
    value_key: str
    labels: tuple[str, ...]
    multiple: bool = False
    text_is_url: bool = False


@dataclass(frozen=True)
class ControlSpec:
    """A control tag paired with the object tag it labels: what one of the backend's predictors answers.

    Attributes:
        tag: The control tag type as Label Studio spells it (``Choices``, ``RectangleLabels``, ``Labels``,
            ``TextArea``, ...); its lower-cased form is the result ``type`` (https://labelstud.io/tags/).
        from_name: The control tag's ``name``.
        to_name: The object tag's ``name`` (the first of its ``toName`` whose ``value`` is a ``$key``).
        object_tag: The object tag type (``Image``, ``Text``, ``HyperText``, ``Audio``, ...).
        value_key: The key of the task's ``data`` holding the object's value (URL or text).
        labels: The control's ``<Choice>``/``<Label>`` values (aliases when set), in config order.
        attrs: All the control tag's XML attributes, as written.
        text_is_url: ``True`` for ``<Text valueType="url">`` (the text is fetched from the URL).
        text_encoding: A ``<Text>``'s ``encoding`` (``base64``, ``base64unicode``: :attr:`ObjectTag.encoding`), or
            ``""``.
    """

    tag: str
    from_name: str
    to_name: str
    object_tag: str
    value_key: str
    labels: tuple[str, ...]
    attrs: dict = field(default_factory=dict, compare=False, hash=False)
    text_is_url: bool = False
    text_encoding: str = ""

    @property
    def type(self) -> str:
        """The result ``type`` of this control (``rectanglelabels`` for ``RectangleLabels``)."""
        return self.tag.lower()

    @property
    def per_region(self) -> bool:
        """``True`` for ``perRegion="true"`` (a TextArea or Choices answered per region)."""
        return str(self.attrs.get("perRegion", "")).lower() == "true"

    @property
    def multiple(self) -> bool:
        """``True`` for ``choice="multiple"`` (Choices)."""
        return str(self.attrs.get("choice", "single")).lower() == "multiple"

    @property
    def repeated(self) -> str:
        """The ``indexFlag`` placeholder (``{{idx}}``) in the control's name, its object's name or its object's value
        when it stands inside a ``<Repeater>`` (https://labelstud.io/tags/repeater), else ``""``.

        label-studio-sdk's parser reads a Repeater's tags as written (``<Choices name="c_{{idx}}">`` over
        ``<Image name="image_{{idx}}" value="$images[{{idx}}].url">``), while Label Studio's editor makes one tag per
        item of the task's list (``c_0``, ``c_1``, ...): no result names the control as parsed and no task's data
        has its value's key, so nothing answers it (:data:`REPEATER_PLACEHOLDER`).
        """
        for text in (self.from_name, self.to_name, self.value_key):
            found = REPEATER_PLACEHOLDER.search(text)
            if found:
                return found.group(0)
        return ""


@dataclass(frozen=True)
class DataField:
    """The object tag a repo file fills.

    Attributes:
        tag: The object tag's type, e.g. ``"Image"`` or ``"Text"``.
        name: Its ``name`` attribute (what control tags point at with ``toName``).
        value_key: The task data key (``"image"`` for ``value="$image"``).
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


@dataclass(frozen=True)
class _Parsed:
    controls: tuple[ControlTag, ...]
    objects: tuple[ObjectTag, ...]


@cached(LRUCache(maxsize=128), lock=threading.Lock())
def _interface(label_config: str):
    """label-studio-sdk's ``LabelInterface`` of ``label_config``, one per distinct XML (raises LabelConfigError)."""
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(label_config, str) or not label_config.strip():
        raise LabelConfigError("the label config is empty")
    try:
        return LabelInterface(label_config)
    except Exception as exc:  # the SDK raises its own XML syntax and validation errors
        reason = one_line(exc)  # one line: lxml's messages may hold a newline
        raise LabelConfigError(f"the label config is not valid XML: {reason[:300]}") from None


@cached(LRUCache(maxsize=128), lock=threading.Lock())
def _parse(label_config: str) -> _Parsed:
    interface = _interface(label_config)
    objects = []
    for obj in interface.objects:
        value = obj.attr.get("value") or ""
        objects.append(ObjectTag(tag=obj.tag, name=obj.name, value=value[1:] if value.startswith("$") else "",
                                 value_type=(obj.attr.get("valueType") or "").lower(),
                                 value_list=obj.attr.get("valueList") or "",
                                 encoding=(obj.attr.get("encoding") or "").lower()))
    controls = tuple(ControlTag(tag=c.tag, name=c.name, to_name=tuple(c.to_name or ()),
                                labels=tuple(getattr(c, "labels", None) or ()), attrs=dict(c.attr))
                     for c in interface.controls)
    return _Parsed(controls, tuple(objects))


def parse_label_config(label_config: str) -> tuple[list[ControlTag], dict[str, ObjectTag]]:
    """Find the control tags and object tags of a label config.

    Args:
        label_config: The XML, as in ``project.label_config`` or the ``schema`` field of ``/setup``.

    Returns:
        ``(controls, objects)``: the control tags in document order, and the object tags by ``name``.

    Raises:
        LabelConfigError: When the XML is empty or does not parse.

    Example:
        >>> controls, objects = parse_label_config(
        ...     '<View><Image name="img" value="$image"/>'
        ...     '<Choices name="label" toName="img"><Choice value="Cat"/></Choices></View>')
        >>> controls[0].name, controls[0].to_name, objects["img"].value
        ('label', ('img',), 'image')
    """
    parsed = _parse(label_config)
    return list(parsed.controls), {o.name: o for o in parsed.objects}


def prediction_errors(label_config: str, prediction: dict) -> list[str]:
    """Why Label Studio would not store ``prediction`` in a project of ``label_config``; ``[]`` when it would.

    The check Label Studio (1.22 and later) runs on each prediction of ``POST /api/projects/<id>/import/predictions``
    in its default path (``ImportPredictionsAPI._create_legacy`` in ``label_studio/data_import/api.py``), which
    drops a prediction that fails it: label-studio-sdk's ``LabelInterface.validate_prediction``, the same package
    and version Label Studio 1.23.2 pins. Its other path (the feature flag
    ``fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short``, see the README) stores predictions
    unchecked, so the backend checks them itself before it writes.

    Args:
        prediction: ``{"result": [{"from_name", "to_name", "type", "value"}, ...], "score": s, ...}``
            (https://labelstud.io/guide/predictions).

    Returns:
        The SDK's reasons, e.g. ``["Region 0: Invalid value for control 'label'. Got: {'choices': ['x']}. ..."]``;
        an exception of the validator is a reason too (``"error validating the prediction: ..."``), as Label
        Studio counts it.

    Raises:
        LabelConfigError: When the XML is empty or does not parse.
    """
    interface = _interface(label_config)
    try:
        return list(interface.validate_prediction(prediction, return_errors=True) or [])
    except Exception as exc:  # the SDK's checks raise on shapes they do not expect
        return [f"error validating the prediction: {one_line(exc)[:300]}"]


def parsed_label_config(label_config: str) -> dict:
    """The label config in label-studio-ml's ``parsed_label_config`` shape.

    Args:
        label_config: The XML.

    Returns:
        ``{from_name: {"type": tag, "to_name": [...], "inputs": [{"type": tag, "value": key}],
        "labels": [...], "labels_attrs": {}}}`` for each control tag, the shape label-studio-ml models
        read (label-studio-sdk's ``parse_config``).

    Raises:
        LabelConfigError: When the XML does not parse.
    """
    controls, objects = parse_label_config(label_config)
    return {c.name: {"type": c.tag, "to_name": list(c.to_name),
                     "inputs": [{"type": objects[n].tag, "value": objects[n].value} for n in c.to_name if n in objects],
                     "labels": list(c.labels), "labels_attrs": {}}
            for c in controls}


def choices_spec(label_config: str) -> ChoicesSpec:
    """Pick the first ``<Choices>`` over an ``<Image>``, ``<Text>`` or ``<HyperText>`` tag.

    Args:
        label_config: The XML.

    Returns:
        A :class:`ChoicesSpec`.

    Raises:
        LabelConfigError: When the XML does not parse, or has no Choices tag over an Image or Text tag with
            a ``$key`` value and at least two choices; the message says what it found.
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
                    raise LabelConfigError(
                        f"<Choices name={c.name!r}> needs at least two <Choice> values, it has {len(c.labels)}")
                object_type = "image" if obj.tag.lower() == "image" else "text"
                return ChoicesSpec(
                    from_name=c.name, to_name=obj.name, object_type=object_type, value_key=obj.value,
                    labels=c.labels, multiple=(c.attrs.get("choice") or "single").lower() == "multiple",
                    text_is_url=object_type == "text" and obj.value_type == "url")
    raise LabelConfigError(
        "the default model supports a <Choices> tag over an <Image> or <Text> tag with a $value; "
        "this label config has " + ("; ".join(found) if found else "no control tag"))


def control_specs(label_config: str) -> list[ControlSpec]:
    """Every control tag of the label config that labels an object tag with a ``$key`` value.

    Args:
        label_config: The XML.

    Returns:
        One :class:`ControlSpec` per such control tag, in config order (a control over no object tag
        with a value, such as ``<Choices toName="txt">`` over ``<Text value="constant">``, is left out). A control
        inside a ``<Repeater>`` is in the list as parsed, placeholder and all (:attr:`ControlSpec.repeated`): the
        backend answers none, and names it with that reason.

    Raises:
        LabelConfigError: When the XML does not parse.

    Example:
        >>> [c.type for c in control_specs('<View><Image name="i" value="$image"/>'
        ...     '<RectangleLabels name="box" toName="i"><Label value="Cat"/></RectangleLabels></View>')]
        ['rectanglelabels']
    """
    controls, objects = parse_label_config(label_config)
    specs = []
    for c in controls:
        target = next((objects[n] for n in c.to_name if n in objects and objects[n].value), None)
        if target is not None:
            specs.append(ControlSpec(tag=c.tag, from_name=c.name, to_name=target.name, object_tag=target.tag,
                                     value_key=target.value, labels=c.labels, attrs=dict(c.attrs),
                                     text_is_url=target.tag in TEXT_TAGS and target.value_type == "url",
                                     text_encoding=target.encoding if target.tag == "Text" else ""))
    return specs


def data_value(data: Any, key: str) -> Any:
    """The value an object tag's ``value="$key"`` shows of a task's ``data``, as Label Studio's editor reads it:
    ``data[key]`` when the data has that key, else the dotted path (``$meta.body`` is ``data["meta"]["body"]``;
    a number steps into a list: ``$pages.0``), which Label Studio 1.23 accepts on import (``check_data`` of
    ``label_studio/tasks/validation.py`` walks it) and its editor resolves with lodash's ``get``. Before, the backend
    read the dotted key as one literal key, and such a project was never learned nor predicted (an audit).

    Args:
        data: The task's ``data`` (anything: a non-object has no value).
        key: The key, without its ``$``.

    Returns:
        The value, or ``None`` when the data has none at that key or path.
    """
    if not isinstance(data, dict):
        return None
    if key in data or "." not in key:
        return data.get(key)
    value: Any = data
    for step in key.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def data_field(label_config: str) -> DataField:
    """Find the first object tag of ``label_config`` that a repo file can fill.

    Args:
        label_config: The project's label config XML.

    Returns:
        The :class:`DataField` of the first Image, Audio, Video, Text or HyperText tag whose ``value`` is a
        ``$variable``.

    Raises:
        LabelConfigError: The XML does not parse, or it has no such object tag.
    """
    try:
        _, objects = parse_label_config(label_config)
    except LabelConfigError as exc:
        raise LabelConfigError(f"the project's label config does not parse: {exc}") from None
    for obj in objects.values():
        if obj.tag in URL_TAGS + TEXT_TAGS and obj.value:
            return DataField(obj.tag, obj.name, obj.value, obj.tag in URL_TAGS or obj.value_type == "url")
    tags = ", ".join(sorted({obj.tag for obj in objects.values()})) or "none"
    lists = [f"<{o.tag} name={o.name!r} valueList={o.value_list!r}>" for o in objects.values() if o.value_list]
    listed = (f"; {', '.join(lists)} shows a list of files per task, which the sync does not make (one file, one "
              "task)") if lists else ""
    raise LabelConfigError("the project's label config has no Image, Audio, Video, Text or HyperText "
                           f"tag with value=\"$...\" (object tags found: {tags}){listed}")


@cached(LRUCache(maxsize=128), lock=threading.Lock())
def task_data_keys(label_config: str) -> dict[str, str]:
    """The keys Label Studio requires in each task's ``data`` for ``label_config``, and the tag of each:
    ``{key: "<Tag name='...' value='$key'>"}``, in config order.

    Label Studio's rule (``extract_data_types`` in ``label_studio/core/label_config.py``, applied to every imported
    task by ``TaskValidator.check_data`` in ``label_studio/tasks/validation.py``, which answers 400 ``"<key>" key is
    expected in task data``): every tag with both a ``name`` and a ``value`` attribute, object or control (dynamic
    ``<Choices value="$options">``, a second ``<Text name="question" value="$question">``), names the key of its
    ``value``: the text after ``$``, or the first ``$word`` of a value with more around it; a dotted key or a
    Repeater's ``key[...]`` is required by its first part. A tag without ``name`` (``<Header value="$title"/>``)
    requires nothing.

    Raises:
        LabelConfigError: The XML is empty or does not parse.

    Example:
        >>> task_data_keys('<View><Text name="t" value="$text"/><Header value="$title"/>'
        ...                '<Choices name="c" toName="t" value="$options"/></View>')
        {'text': "<Text name='t' value='$text'>", 'options': "<Choices name='c' value='$options'>"}
    """
    from lxml import etree

    _parse(label_config)  # the same errors as every reader
    root = etree.fromstring(label_config.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True,
                                                                         huge_tree=False))
    keys: dict[str, str] = {}
    for element in root.iter():
        name, value = element.get("name"), element.get("value")
        if not isinstance(element.tag, str) or not name or not value:
            continue
        found = value[1:] if len(value) > 1 and value[0] == "$" else next(iter(re.findall(r"\$(\w+)", value)), "")
        key = found.split("[")[0].split(".")[0]
        if key:
            keys.setdefault(key, f"<{element.tag} name={name!r} value={value!r}>")
    return keys


@dataclass(frozen=True)
class ChoiceCondition:
    """A condition on the selected choices under which Label Studio's editor shows a control tag.

    Written ``visibleWhen="choice-selected"`` (or ``"choice-unselected"``) with ``whenTagName`` and
    ``whenChoiceValue`` on the control itself or on a ``<View>`` around it (https://labelstud.io/tags/choices,
    https://labelstud.io/tags/view). The editor's rule (``isVisible`` in ``web/libs/editor/src/mixins/Visibility.js``
    of https://github.com/HumanSignal/label-studio): with a tag name, any of the comma-separated values selected
    there (a ``<Choice>``'s value or alias), or any choice there when no value is given; without a tag name, any
    choice of any Choices tag. ``whenChoiceValue`` without ``visibleWhen`` shows the control while that one value is
    selected in any Choices tag. A hidden control's results are not submitted with an annotation.

    Attributes:
        selected: ``True`` for ``choice-selected``, ``False`` for ``choice-unselected`` (shown while the condition
            does not hold).
        tag_name: The Choices tag's ``name`` (``whenTagName``), or ``""`` for any Choices tag.
        values: The results' names of the choices that count (aliases where the config gives them), or ``()`` for
            any choice.
    """

    selected: bool
    tag_name: str
    values: tuple[str, ...]

    def holds(self, chosen: dict[str, set]) -> bool:
        """Whether the control is shown, given ``{Choices from_name: the choices its results select}``."""
        picked = chosen.get(self.tag_name, set()) if self.tag_name else set().union(*chosen.values())
        hit = bool(picked & set(self.values)) if self.values else bool(picked)
        return hit == self.selected


@cached(LRUCache(maxsize=128), lock=threading.Lock())
def choice_conditions(label_config: str) -> dict[str, tuple[ChoiceCondition, ...]]:
    """``{control name: the conditions under which it is shown}`` for each control tag shown only while some choice
    is (or is not) selected (:class:`ChoiceCondition`; every one must hold, the control's own and its ``<View>``
    ancestors'). Controls always shown, and the other ``visibleWhen`` values (``region-selected``, which concerns
    per-region controls), are not in the map.

    Raises:
        LabelConfigError: The XML is empty or does not parse.

    Example:
        >>> choice_conditions('<View><Text name="t" value="$text"/><Choices name="kind" toName="t">'
        ...     '<Choice value="review"/><Choice value="plot" alias="p"/></Choices>'
        ...     '<View visibleWhen="choice-selected" whenTagName="kind" whenChoiceValue="plot">'
        ...     '<Choices name="tone" toName="t"><Choice value="dark"/></Choices></View></View>')
        {'tone': (ChoiceCondition(selected=True, tag_name='kind', values=('p',)),)}
    """
    from lxml import etree

    parsed = _parse(label_config)
    controls = {c.name for c in parsed.controls}
    root = etree.fromstring(label_config.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True,
                                                                         huge_tree=False))
    names: dict[str, dict[str, str]] = {}  # Choices name -> {value or alias: the name its results hold}
    for element in root.iter("Choices"):
        for choice in element.iter("Choice"):
            value = choice.get("value")
            if value is not None:
                result_name = choice.get("alias") or value
                names.setdefault(element.get("name") or "", {}).update({value: result_name, result_name: result_name})

    def condition(element) -> ChoiceCondition | None:
        when, tag_name, value = element.get("visibleWhen"), element.get("whenTagName") or "", element.get(
            "whenChoiceValue")
        if when in ("choice-selected", "choice-unselected"):
            values = tuple(v for v in (value or "").split(",") if v) if tag_name else ()
            known = names.get(tag_name, {})
            return ChoiceCondition(when == "choice-selected", tag_name, tuple(known.get(v, v) for v in values))
        if when is None and value:
            return ChoiceCondition(True, "", (value,))
        return None

    found: dict[str, tuple[ChoiceCondition, ...]] = {}
    for element in root.iter():
        name = element.get("name") if isinstance(element.tag, str) else None
        if name not in controls or name in found:
            continue
        held = tuple(c for c in map(condition, [element, *element.iterancestors()]) if c is not None)
        if held:
            found[name] = held
    return found


def control_tags(label_config: str) -> dict[str, str]:
    """``{from_name: control tag type}`` of the label config's control tags, in config order
    (e.g. ``{"kind": "Choices", "box": "RectangleLabels"}``).

    Raises:
        LabelConfigError: The XML does not parse.
    """
    try:
        controls, _ = parse_label_config(label_config)
    except LabelConfigError as exc:
        raise LabelConfigError(f"the project's label config does not parse: {exc}") from None
    return {c.name: c.tag for c in controls}

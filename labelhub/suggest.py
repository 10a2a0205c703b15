"""The known name a mistyped one most likely meant, for "did you mean ...?" hints in errors.

One rule for every hint LabelHub gives (a label of a CSV or COCO file, a key or control of the model's
parameters): the name itself, then the same name in another case (``cat`` for ``Cat``), else :func:`difflib.get_close_matches`'
nearest at or above a similarity ratio (0 to 1; the ratio of :class:`difflib.SequenceMatcher`).
"""
from __future__ import annotations

import difflib
from typing import Iterable


def closest(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The name of ``known`` that ``name`` is closest to, or ``None`` when none is close enough.

    Args:
        name: what the user wrote.
        known: the names that exist (an iterable of strings; duplicates are ignored, order breaks ties).
        cutoff: the lowest :class:`difflib.SequenceMatcher` ratio accepted, 0 to 1 (0.6 is difflib's default;
            labels use 0.75, since short labels are close to many).

    Returns:
        ``name`` itself when ``known`` has it, else the same name in another case when ``known`` has one (the first in order), else the nearest name at or
        above ``cutoff``, else ``None``. Never raises for strings.
    """
    known = list(dict.fromkeys(known))
    if name in known:
        return name
    folded = name.casefold()
    same = [k for k in known if k.casefold() == folded]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    return close[0] if close else None

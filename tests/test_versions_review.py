"""What an annotation lead and an ML engineer read of a version: the card's recipe, ``labelhub diff``, ``labelhub
versions`` and the examples (fixes of an audit of versions, 2026-12).

The card and diff texts are pure functions of a manifest and of rows: tested on them directly, as
``tests/test_versions_diff.py`` does; the commands end to end on a local repository.
"""
from __future__ import annotations

import json

import pandas as pd

from labelhub.sync.versions.card import card_block

MANIFEST = {"tag": "annotations-v19", "parent_version": "annotations-v18", "created_at": "2026-12-06T06:31:03+00:00",
            "label_studio": {"project_id": 1},
            "counts": {"annotations": 151, "tasks": 74, "annotators": 4, "added": 8, "changed": 2, "removed": 0},
            "label_distribution": {"label": {"Coat": 23, "Ankle boot": 5}}}


def test_the_cards_recipe_names_the_repo_and_the_consensus_config():
    """The recipe said ``load_dataset("<repo_id>", ...)`` on a Hub repo whose id the export knows, and did not show
    the consensus config the agreement section refers to."""
    block = card_block(MANIFEST, {"label": "Choices"}, "image", agreement="| control |", repo_id="owner/fmnist")
    assert "<repo_id>" not in block
    assert 'datasets.load_dataset("owner/fmnist", revision="annotations-v19", split="train")' in block
    assert 'datasets.load_dataset("owner/fmnist", "rows", revision="annotations-v19", split="train")' in block
    assert 'datasets.load_dataset("owner/fmnist", "consensus", revision="annotations-v19", split="train")' in block
    local = card_block(MANIFEST, {"label": "Choices"}, "image", agreement="| control |", local=True)
    assert 'datasets.load_dataset("./annotations-v19", "consensus", split="train")' in local

"""labelhub.sync.regions: percent (Label Studio) ↔ fractions (LabelHub CSVs) ↔ COCO pixels, by hand-computed values."""
from __future__ import annotations

import random

import pytest

from labelhub.sync.regions import (FractionEdges, coco_from_edges, edges_from_coco, edges_from_percent,
                          fractions_from_percent, percent_from_edges, percent_from_fractions)


def test_edges_as_fractions_become_label_studio_percent():
    # a 28 x 28 image: left 7 px, top 0, right 21 px, bottom 28 px
    assert percent_from_edges(FractionEdges(0.25, 0.0, 0.75, 1.0)) == {"x": 25.0, "y": 0.0, "width": 50.0,
                                                                       "height": 100.0}
    got = percent_from_edges((0.1, 0.2, 0.35, 0.9))
    assert got == pytest.approx({"x": 10.0, "y": 20.0, "width": 25.0, "height": 70.0}, abs=1e-12)


def test_coco_pixels_become_edges_and_back():
    assert edges_from_coco([7, 0, 14, 28], 28, 28) == FractionEdges(0.25, 0.0, 0.75, 1.0)
    assert edges_from_coco([3.5, 7, 7, 14], 28, 28) == FractionEdges(0.125, 0.25, 0.375, 0.75)
    assert edges_from_coco([10, 20, 100, 50], 200, 100) == FractionEdges(0.05, 0.2, 0.55, 0.7)
    assert coco_from_edges(FractionEdges(0.05, 0.2, 0.55, 0.7), 200, 100) == pytest.approx([10, 20, 100, 50])
    with pytest.raises(ValueError, match="4 numbers"):
        edges_from_coco([1, 2, 3], 10, 10)


def test_percent_to_export_fractions_round_trip_within_1e_6():
    rng = random.Random(5)
    for _ in range(10_000):
        left, top = rng.random() * 0.9, rng.random() * 0.9
        edges = FractionEdges(left, top, left + rng.random() * (1 - left), top + rng.random() * (1 - top))
        percent = percent_from_edges(edges)
        assert edges_from_percent(percent) == pytest.approx(edges, abs=1e-6)
        export = fractions_from_percent({**percent, "rotation": 0, "rectanglelabels": ["Bag"]})
        assert export == pytest.approx({"x": edges.left, "y": edges.top, "width": edges.right - edges.left,
                                        "height": edges.bottom - edges.top}, abs=1e-6)
        assert percent_from_fractions(export) == pytest.approx(percent, abs=1e-9)

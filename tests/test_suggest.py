"""The one "did you mean ...?" rule (labelhub.suggest), proven on any names."""
from hypothesis import given, strategies as st

from labelhub.suggest import closest

names = st.lists(st.text(max_size=12), max_size=8)


@given(st.text(max_size=12), names, st.floats(0, 1))
def test_closest_names_a_known_name_or_none(name, known, cutoff):
    found = closest(name, known, cutoff)
    assert found is None or found in known
    if name in known:
        assert found == name


def test_closest_prefers_the_same_name_in_another_case_then_the_nearest():
    assert closest("cat", ["Dog", "CAT", "Cat"]) == "CAT"
    assert closest("Sneakr", ["Sneaker", "Sandal"], cutoff=0.75) == "Sneaker"
    assert closest("xyz", ["Sneaker", "Sandal"]) is None

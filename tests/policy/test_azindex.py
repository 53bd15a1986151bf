"""The array index's top-k selection agrees with a full sort, ties included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.policy.azindex import smallest

# Few distinct values, so ties on one key or both are the rule, not the exception.
_column = st.lists(st.sampled_from([0.0, 0.01, 0.02, 0.5, -1.0, 3.0]), min_size=1, max_size=60)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_smallest_matches_a_full_lexsort(data: st.DataObject) -> None:
    primary = np.array(data.draw(_column))
    secondary = np.array(
        data.draw(
            st.lists(
                st.sampled_from([0.0, 1.0, -2.0, 0.25]),
                min_size=len(primary),
                max_size=len(primary),
            )
        )
    )
    k = data.draw(st.integers(1, 8))
    expected = np.lexsort((np.arange(len(primary)), secondary, primary))[:k].tolist()
    assert smallest(primary, secondary, k) == expected


def test_a_smaller_primary_wins_over_any_secondary() -> None:
    primary = np.array([0.1, 0.1, 0.0, 0.1, 0.1])
    secondary = np.array([1.0, 2.0, 100.0, 3.0, 4.0])
    assert smallest(primary, secondary, 2) == [2, 0]

"""Laws of train selection and splitting (xfeldata.core.trains), checked with hypothesis."""

import math
import pickle
import warnings

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from xfeldata.core.trains import (
    by_id,
    by_index,
    roi_shape,
    select_train_ids,
    select_train_positions,
    split_trains,
)

U64_MAX = 2**64 - 1


@st.composite
def train_id_arrays(draw, max_size=60):
    """Sorted unique uint64 train IDs: realistic runs with gaps, or anywhere in uint64."""
    if draw(st.booleans()):
        start = draw(st.integers(0, 2**40))
        gaps = draw(st.lists(st.integers(1, 5), max_size=max_size))
        ids = start + np.concatenate([[0], np.cumsum(gaps, dtype=np.int64)]).astype(np.uint64)
        if draw(st.booleans()):
            ids = ids[:0]  # the empty train list is a valid input too
        return ids
    values = draw(st.lists(st.integers(0, U64_MAX), unique=True, max_size=max_size))
    return np.array(sorted(values), dtype=np.uint64)


def pos_slices(n):
    bound = st.none() | st.integers(-n - 3, n + 3)
    return st.builds(slice, bound, bound, st.none() | st.integers(1, 5))


def quietly(f, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args)


def assert_result_invariants(ids):
    assert ids.dtype == np.uint64
    assert not ids.flags.writeable
    assert ids.ndim == 1
    assert (ids[1:] >= ids[:-1]).all()


# ----------------------------------------------------------------- positional


@given(st.data())
def test_slices_compose_like_slicing_a_sorted_array(data):
    ids = data.draw(train_id_arrays())
    s1 = data.draw(pos_slices(len(ids)))
    first = select_train_ids(ids, s1)
    s2 = data.draw(pos_slices(len(first)))
    np.testing.assert_array_equal(select_train_ids(first, s2), ids[s1][s2])
    np.testing.assert_array_equal(select_train_ids(first, by_index[s2]), ids[s1][s2])


@given(st.data())
def test_position_lists_are_sorted_fancy_indexing(data):
    ids = data.draw(train_id_arrays())
    assume(len(ids) > 0)
    n = len(ids)
    positions = data.draw(st.lists(st.integers(-n, n - 1), max_size=20))
    expected = np.sort(ids[np.array(positions, dtype=int)])
    np.testing.assert_array_equal(select_train_ids(ids, positions), expected)
    np.testing.assert_array_equal(select_train_ids(ids, np.array(positions, dtype=np.int64)),
                                  expected)


@given(st.data())
def test_bool_masks_select_where_true(data):
    ids = data.draw(train_id_arrays())
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids))),
                    dtype=bool)
    np.testing.assert_array_equal(select_train_ids(ids, mask), ids[mask])


@given(st.data())
def test_int_selects_one_train(data):
    ids = data.draw(train_id_arrays())
    assume(len(ids) > 0)
    i = data.draw(st.integers(-len(ids), len(ids) - 1))
    assert select_train_ids(ids, i).tolist() == [ids[i]]


# ----------------------------------------------------------------- by_id


def id_bounds(ids):
    """Train IDs in the run, just around them, or anywhere (incl. beyond uint64)."""
    near = [st.integers(0, U64_MAX)]
    if len(ids):
        lo, hi = int(ids[0]), int(ids[-1])
        near.append(st.sampled_from(ids.tolist()))
        near.append(st.integers(max(lo - 3, 0), hi + 3))
    return st.none() | st.one_of(near) | st.integers(-5, 2**70)


@given(st.data())
def test_by_id_slice_equals_id_range_mask(data):
    ids = data.draw(train_id_arrays())
    a = data.draw(id_bounds(ids))
    b = data.draw(id_bounds(ids))
    step = data.draw(st.none() | st.integers(1, 4))
    ints = [int(x) for x in ids]  # Python ints: exact comparisons with any bound
    mask = np.array([(a is None or t >= a) and (b is None or t < b) for t in ints], dtype=bool)
    expected = ids[mask][::step]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        result = select_train_ids(ids, by_id[a:b:step])
    np.testing.assert_array_equal(result, expected)
    assert_result_invariants(result)
    # A warning exactly when nothing is selected, and only UserWarnings.
    assert bool(rec) == (len(result) == 0)
    assert all(issubclass(w.category, UserWarning) for w in rec)


@given(st.data())
def test_by_id_values_are_sorted_unique_intersection(data):
    ids = data.draw(train_id_arrays())
    pool = st.integers(0, U64_MAX)
    if len(ids):
        pool = pool | st.sampled_from(ids.tolist())
    requested = data.draw(st.lists(pool, max_size=20))
    expected = np.intersect1d(ids, np.array(requested, dtype=np.uint64))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        result = select_train_ids(ids, by_id[requested])
    np.testing.assert_array_equal(result, expected)
    assert bool(rec) == (len(requested) > 0 and len(expected) == 0)
    np.testing.assert_array_equal(
        quietly(select_train_ids, ids, by_id[np.array(requested, dtype=np.uint64)]), expected)


@given(st.data())
def test_by_id_of_own_ids_is_identity(data):
    ids = data.draw(train_id_arrays())
    np.testing.assert_array_equal(select_train_ids(ids, by_id[ids]), ids)
    if len(ids):
        result = select_train_ids(ids, by_id[int(ids[0]):int(ids[-1]) + 1])
        np.testing.assert_array_equal(result, ids)


# ----------------------------------------------------------------- all selectors


def selectors(ids):
    n = len(ids)
    ints = st.integers(-n, n - 1) if n else st.nothing()
    options = [
        pos_slices(n),
        st.lists(ints, max_size=10) if n else st.just([]),
        st.lists(st.booleans(), min_size=n, max_size=n).map(lambda b: np.array(b, dtype=bool)),
        st.builds(by_id, st.builds(slice, id_bounds(ids), id_bounds(ids))),
        st.builds(by_id, st.lists(st.integers(0, U64_MAX), max_size=5)),
        st.builds(by_index, pos_slices(n)),
    ]
    if n:
        options.append(ints)
        options.append(st.builds(by_id, st.sampled_from(ids.tolist())))
    return st.one_of(options)


@given(st.data())
def test_results_sorted_uint64_read_only_and_match_positions(data):
    ids = data.draw(train_id_arrays())
    ids.flags.writeable = data.draw(st.booleans())
    sel = data.draw(selectors(ids))
    result = quietly(select_train_ids, ids, sel)
    assert_result_invariants(result)
    positions = quietly(select_train_positions, ids, sel)
    assert not positions.flags.writeable
    assert (positions[1:] >= positions[:-1]).all()
    np.testing.assert_array_equal(ids[positions], result)
    # Selected trains are trains of the input.
    assert np.isin(result, ids).all()


@given(st.data())
def test_selector_values_round_trip_and_hash_consistently(data):
    ids = data.draw(train_id_arrays(max_size=10))
    sel = data.draw(selectors(ids).filter(lambda s: isinstance(s, (by_id, by_index))))
    clone = pickle.loads(pickle.dumps(sel))
    assert clone == sel and hash(clone) == hash(sel)
    assert type(sel)(sel.value) == sel
    assert eval(repr(sel), {"by_id": by_id, "by_index": by_index}) == sel


# ----------------------------------------------------------------- split_trains


@given(st.integers(0, 10_000), st.none() | st.integers(1, 200),
       st.none() | st.integers(1, 500))
def test_split_trains_laws(n, parts, tpp):
    assume(parts is not None or tpp is not None)
    slices = split_trains(n, parts=parts, trains_per_part=tpp)
    if n == 0:
        assert slices == []
        return
    # Contiguous cover of range(n), in order.
    assert slices[0].start == 0 and slices[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    sizes = [s.stop - s.start for s in slices]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    expected_count = max(math.ceil(n / tpp) if tpp else 0, min(parts, n) if parts else 0)
    assert len(slices) == expected_count
    if tpp is not None:
        assert max(sizes) <= tpp


# ----------------------------------------------------------------- roi_shape


@st.composite
def shapes_and_rois(draw):
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=4)))
    roi = []
    for dim in shape:
        kind = draw(st.sampled_from(["slice", "int", "skip"]))
        if kind == "slice":
            roi.append(draw(st.slices(dim)))
        elif kind == "int" and dim:
            roi.append(draw(st.integers(-dim, dim - 1)))
        else:
            break  # leave the remaining dims unindexed
    if draw(st.booleans()):
        roi.insert(draw(st.integers(0, len(roi))), np.newaxis)
    return shape, tuple(roi)


@given(shapes_and_rois())
def test_roi_shape_equals_indexing_a_real_array(case):
    shape, roi = case
    assert roi_shape(shape, roi) == np.zeros(shape)[roi].shape

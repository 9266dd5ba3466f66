"""Examples for train selectors, split_trains and roi_shape (API.md 2.4 and 5)."""

import pickle
import warnings

import numpy as np
import pytest

from xfeldata.core.trains import (
    by_id,
    by_index,
    roi_shape,
    select_train_ids,
    select_train_positions,
    split_trains,
)

# 10 trains with a gap: 10000..10004, then 10010..10014
IDS = np.concatenate([np.arange(10000, 10005), np.arange(10010, 10015)]).astype(np.uint64)


def sel(s, ids=IDS):
    """Select without tolerating any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return select_train_ids(ids, s).tolist()


def sel_warns(s, match, ids=IDS):
    with pytest.warns(UserWarning, match=match):
        return select_train_ids(ids, s).tolist()


# ----------------------------------------------------------------- positional selectors


@pytest.mark.parametrize("s, expected", [
    (np.s_[:3], [10000, 10001, 10002]),
    (np.s_[-2:], [10013, 10014]),
    (np.s_[::4], [10000, 10004, 10013]),
    (np.s_[8:100], [10013, 10014]),
    (np.s_[5:2], []),
    (np.s_[::-4], [10001, 10010, 10014]),  # a set of trains: returned sorted
    (by_index[1:3], [10001, 10002]),
])
def test_slices_are_positions(s, expected):
    assert sel(s) == expected


@pytest.mark.parametrize("s, expected", [
    (0, [10000]),
    (-1, [10014]),
    (np.int32(5), [10010]),
    (np.uint64(9), [10014]),
    (np.array(3), [10003]),
    (by_index[-10], [10000]),
])
def test_int_like_is_one_position(s, expected):
    assert sel(s) == expected


@pytest.mark.parametrize("s", [10, -11, np.array(10), by_index[100]])
def test_int_out_of_range_raises_index_error(s):
    with pytest.raises(IndexError, match="out of range"):
        select_train_ids(IDS, s)


@pytest.mark.parametrize("s, expected", [
    ([5, 0], [10000, 10010]),
    ([3, 3, 1], [10001, 10003, 10003]),  # sorted, duplicates kept
    ([-1, 0], [10000, 10014]),
    (np.array([9, 2], dtype=np.uint8), [10002, 10014]),
    (np.array([], dtype=int), []),
    ([], []),
    (by_index[[4, 5]], [10004, 10010]),
])
def test_lists_and_int_arrays_are_positions(s, expected):
    assert sel(s) == expected


@pytest.mark.parametrize("s", [[0, 10], [-11], np.array([10], dtype=np.uint16)])
def test_position_lists_out_of_range(s):
    with pytest.raises(IndexError):
        select_train_ids(IDS, s)


def test_bool_mask():
    mask = np.zeros(10, dtype=bool)
    mask[[1, 7]] = True
    assert sel(mask) == [10001, 10012]
    assert sel(by_index[mask]) == [10001, 10012]
    assert sel(np.zeros(10, dtype=bool)) == []  # empty positional result: no warning


@pytest.mark.parametrize("n", [9, 11, 0])
def test_bool_mask_wrong_length(n):
    with pytest.raises(ValueError, match=f"length {n}"):
        select_train_ids(IDS, np.ones(n, dtype=bool))


def test_2d_array_rejected():
    with pytest.raises(ValueError, match="1-D"):
        select_train_ids(IDS, np.zeros((2, 2), dtype=int))


# ----------------------------------------------------------------- by_id


@pytest.mark.parametrize("s, expected", [
    (by_id[10002:10011], [10002, 10003, 10004, 10010]),        # exact IDs
    (by_id[10007:10012], [10010, 10011]),                       # start in gap -> next ID
    (by_id[10001:10007], [10001, 10002, 10003, 10004]),         # stop in gap
    (by_id[5:10002], [10000, 10001]),                           # start before run
    (by_id[10013:99999], [10013, 10014]),                       # stop after run
    (by_id[:10001], [10000]),
    (by_id[10014:], [10014]),
    (by_id[:], IDS.tolist()),
    (by_id[10000:10015:3], [10000, 10003, 10011, 10014]),       # step over positions
    (by_id[np.uint64(10003):np.int64(10005)], [10003, 10004]),
    (by_id[-5:10001], [10000]),                                  # negative: before run
    (by_id[10013:2**70], [10013, 10014]),                        # beyond uint64: after run
])
def test_by_id_slice(s, expected):
    assert sel(s) == expected


@pytest.mark.parametrize("s, match", [
    (by_id[20000:], "after the last train ID"),
    (by_id[20000:30000], "after the last train ID"),
    (by_id[:10000], "before the first train ID"),
    (by_id[:5], "before the first train ID"),
    (by_id[10005:10010], "No trains selected"),   # entirely inside the gap
    (by_id[10003:10003], "No trains selected"),
    (by_id[10004:10002], "No trains selected"),
])
def test_by_id_slice_selecting_nothing_warns(s, match):
    assert sel_warns(s, match) == []


def test_by_id_slice_on_empty_ids_warns():
    assert sel_warns(by_id[1:5], "No trains", ids=np.zeros(0, dtype=np.uint64)) == []


@pytest.mark.parametrize("step", [0, -1])
def test_by_id_slice_step_must_be_positive(step):
    with pytest.raises(ValueError, match="positive"):
        select_train_ids(IDS, by_id[::step])


@pytest.mark.parametrize("s", [by_id[1.5:], by_id[:"x"], by_id[::1.0]])
def test_by_id_slice_non_int_parts(s):
    with pytest.raises(TypeError):
        select_train_ids(IDS, s)


@pytest.mark.parametrize("s, expected", [
    (by_id[10003], [10003]),
    (by_id[np.uint64(10003)], [10003]),
    (by_id[[10014, 10001, 10001, 99]], [10001, 10014]),     # sorted, de-duplicated
    (by_id[np.array([10010, 10000])], [10000, 10010]),
    (by_id[IDS], IDS.tolist()),
    (by_id[[]], []),                                          # empty request: no warning
])
def test_by_id_values_intersect(s, expected):
    assert sel(s) == expected


@pytest.mark.parametrize("s", [by_id[10005], by_id[[1, 2]], by_id[-3], by_id[2**70],
                               by_id[np.array([-1, 10007])]])
def test_by_id_values_without_hits_warn(s):
    assert sel_warns(s, "no trains selected") == []


@pytest.mark.parametrize("s, exc", [
    (by_id[1.5], TypeError),
    (by_id["10003"], TypeError),
    (by_id[np.array([1.0])], TypeError),
    (by_id[np.array([True])], TypeError),
    (by_id[np.zeros((1, 1), dtype=int)], ValueError),
])
def test_by_id_bad_values(s, exc):
    with pytest.raises(exc):
        select_train_ids(IDS, s)


def test_by_id_dedups_even_when_input_has_duplicates():
    # A positional list with repeats gives a train list with repeated IDs.
    ids = select_train_ids(IDS, [1, 1, 2])
    assert sel(by_id[[10001]], ids=ids) == [10001]


# ----------------------------------------------------------------- xarray


def test_bool_dataarray_selects_ids():
    xr = pytest.importorskip("xarray")
    da = xr.DataArray(np.array([True, False, True, True]), dims=["trainId"],
                      coords={"trainId": [10001, 10002, 10012, 50000]})
    assert sel(da) == [10001, 10012]


def test_dataarray_with_non_dim_trainid_coord():
    xr = pytest.importorskip("xarray")
    da = xr.DataArray(np.array([False, True]), dims=["x"],
                      coords={"trainId": ("x", [10000, 10004])})
    assert sel(da) == [10004]


def test_dataarray_non_bool_is_type_error():
    xr = pytest.importorskip("xarray")
    da = xr.DataArray(np.array([1, 0]), dims=["trainId"], coords={"trainId": [10000, 10001]})
    with pytest.raises(TypeError, match="boolean"):
        select_train_ids(IDS, da)


def test_dataarray_without_trainid_is_value_error():
    xr = pytest.importorskip("xarray")
    with pytest.raises(ValueError, match="trainId"):
        select_train_ids(IDS, xr.DataArray(np.array([True, False]), dims=["x"]))


def test_dataarray_without_hits_warns():
    xr = pytest.importorskip("xarray")
    da = xr.DataArray(np.array([True]), dims=["trainId"], coords={"trainId": [7]})
    assert sel_warns(da, "no trains selected") == []


def test_duck_typed_dataarray_without_xarray():
    class FakeCoord:
        values = np.array([10003, 10004])

    class FakeDataArray:  # what the core relies on: .dims, .coords, .values
        dims = ("trainId",)
        coords = {"trainId": FakeCoord()}
        values = np.array([True, False])

    assert sel(FakeDataArray()) == [10003]


@pytest.mark.parametrize("module", ["trains", "names"])
def test_core_modules_import_only_pure_dependencies(module):
    import ast
    import importlib

    path = importlib.import_module(f"xfeldata.core.{module}").__file__
    tree = ast.parse(open(path).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    allowed = {"__future__", "math", "warnings", "typing", "numbers", "os", "re", "numpy", "."}
    assert imported <= allowed, imported - allowed


# ----------------------------------------------------------------- bad selector types


@pytest.mark.parametrize("s, name", [
    (1.0, "float"), ((1, 2), "tuple"), ("10000", "str"), (None, "NoneType"),
    (True, "bool"), ({1, 2}, "set"), (by_index[1.5], "float"), (by_index[(1, 2)], "tuple"),
])
def test_other_selector_types_are_type_errors(s, name):
    with pytest.raises(TypeError, match=name):
        select_train_ids(IDS, s)


@pytest.mark.parametrize("s", [np.array([1.0, 2.0]), np.array(["a"]), np.array(1.0)])
def test_bad_array_dtypes_are_type_errors(s):
    with pytest.raises(TypeError):
        select_train_ids(IDS, s)


# ----------------------------------------------------------------- results and inputs


@pytest.mark.parametrize("s", [np.s_[:], 3, [2, 1], by_id[10001:], by_id[[10003]],
                               np.ones(10, dtype=bool)])
def test_results_are_read_only_sorted_uint64(s):
    ids = select_train_ids(IDS, s)
    assert ids.dtype == np.uint64
    assert not ids.flags.writeable
    assert (np.diff(ids.astype(np.int64)) >= 0).all()
    pos = select_train_positions(IDS, s)
    assert pos.dtype == np.intp and not pos.flags.writeable
    np.testing.assert_array_equal(IDS[pos], ids)


def test_input_not_modified_and_result_not_a_view_of_writeable_input():
    ids = IDS.copy()
    out = select_train_ids(ids, np.s_[:])
    out_flags = out.flags.writeable
    assert ids.flags.writeable and not out_flags
    np.testing.assert_array_equal(ids, IDS)


def test_unsorted_train_ids_rejected():
    with pytest.raises(ValueError, match="sorted"):
        select_train_ids(np.array([3, 1, 2], dtype=np.uint64), np.s_[:])


def test_train_ids_from_lists_and_signed_arrays():
    assert select_train_ids([5, 6, 7], by_id[6:]).tolist() == [6, 7]
    assert select_train_ids(np.array([5, 6], dtype=np.int32), 0).dtype == np.uint64
    with pytest.raises(ValueError, match="negative"):
        select_train_ids(np.array([-1, 6]), 0)
    with pytest.raises(TypeError):
        select_train_ids(np.array([1.0, 2.0]), 0)


def test_warning_points_at_the_caller():
    with pytest.warns(UserWarning) as rec:
        select_train_ids(IDS, by_id[1])
    assert rec[0].filename == __file__


# ----------------------------------------------------------------- selector values


def test_subscription_builds_instances_with_value():
    s = by_id[10:20:2]
    assert isinstance(s, by_id)
    assert s.value == slice(10, 20, 2)
    assert by_index[5].value == 5
    assert by_index[..., 3, [1, 2]].value == (Ellipsis, 3, [1, 2])
    assert by_id(slice(1, 2)) == by_id[1:2]


@pytest.mark.parametrize("s, text", [
    (by_id[10:20:2], "by_id[10:20:2]"),
    (by_id[10:20], "by_id[10:20]"),
    (by_id[:], "by_id[:]"),
    (by_id[::2], "by_id[::2]"),
    (by_id[5], "by_id[5]"),
    (by_id[np.uint64(5):], "by_id[5:]"),
    (by_index[..., 3, [1, 2]], "by_index[..., 3, [1, 2]]"),
    (by_index[[1, 2]], "by_index[[1, 2]]"),
    (by_index[4,], "by_index[4,]"),
    (by_index[-1], "by_index[-1]"),
])
def test_repr_uses_slice_syntax(s, text):
    assert repr(s) == text


def test_equality_and_hash_by_value():
    assert by_id[10:20] == by_id[10:20]
    assert hash(by_id[10:20]) == hash(by_id[10:20])
    assert by_id[10:20] != by_id[10:21]
    assert by_id[10:20] != by_index[10:20]
    assert by_id[[1, 2]] == by_id[np.array([1, 2])]
    assert hash(by_id[[1, 2]]) == hash(by_id[np.array([1, 2], dtype=np.uint64)])
    assert by_id[[1, 2]] != by_id[[2, 1]]
    assert by_index[[True, False]] != by_index[[1, 0]]
    assert by_id[np.int64(3)] == by_id[3]
    assert len({by_id[1:2], by_id[1:2], by_index[1:2]}) == 2


def test_frozen():
    s = by_id[1:2]
    with pytest.raises(AttributeError):
        s.value = slice(3, 4)
    with pytest.raises(AttributeError):
        del s.value


def test_array_value_is_a_read_only_copy():
    arr = np.array([1, 2])
    s = by_id[arr]
    h = hash(s)
    arr[0] = 5
    assert s.value.tolist() == [1, 2] and not s.value.flags.writeable
    assert hash(s) == h


@pytest.mark.parametrize("s", [by_id[10:20:2], by_index[..., 3, [1, 2]],
                               by_id[np.array([1, 2])], by_index[-1]])
def test_pickle_round_trip(s):
    s2 = pickle.loads(pickle.dumps(s))
    assert type(s2) is type(s) and s2 == s and hash(s2) == hash(s)
    assert len(pickle.dumps(by_id[10:20])) < 200


# ----------------------------------------------------------------- split_trains


@pytest.mark.parametrize("n, kw, sizes", [
    (11, dict(trains_per_part=8), [5, 6]),
    (16, dict(trains_per_part=8), [8, 8]),
    (17, dict(trains_per_part=8), [5, 6, 6]),
    (10, dict(parts=3), [3, 3, 4]),
    (2, dict(parts=5), [1, 1]),                        # never more parts than trains
    (10, dict(parts=4, trains_per_part=8), [2, 3, 2, 3]),   # parts raises the count
    (10, dict(parts=1, trains_per_part=3), [2, 3, 2, 3]),   # ceil(10/3) = 4 wins
    (1, dict(trains_per_part=100), [1]),
])
def test_split_trains_examples(n, kw, sizes):
    slices = split_trains(n, **kw)
    assert [s.stop - s.start for s in slices] == sizes
    assert slices[0].start == 0 and slices[-1].stop == n
    assert all(s.step is None and type(s.start) is int and type(s.stop) is int
               for s in slices)


def test_split_trains_11_by_8_exact_slices():
    assert split_trains(11, trains_per_part=8) == [slice(0, 5), slice(5, 11)]


def test_split_zero_trains_is_empty():
    assert split_trains(0, parts=3) == []
    assert split_trains(0, trains_per_part=3) == []


def test_split_trains_needs_parts_or_size():
    with pytest.raises(ValueError, match="Either parts or trains_per_part must be specified"):
        split_trains(10)


@pytest.mark.parametrize("kw", [dict(parts=0), dict(trains_per_part=0), dict(parts=-1),
                                dict(parts=2, trains_per_part=0)])
def test_split_trains_values_below_one(kw):
    with pytest.raises(ValueError, match="at least 1"):
        split_trains(10, **kw)


@pytest.mark.parametrize("args, kw, exc", [
    ((10,), dict(parts=2.0), TypeError),
    ((10.0,), dict(parts=2), TypeError),
    ((-1,), dict(parts=2), ValueError),
])
def test_split_trains_bad_types(args, kw, exc):
    with pytest.raises(exc):
        split_trains(*args, **kw)


def test_split_trains_large():
    slices = split_trains(50_000, trains_per_part=16)
    assert len(slices) == 3125
    assert {s.stop - s.start for s in slices} == {16}


def test_split_trains_huge_counts_use_python_ints():
    n = 2**40 + 3
    slices = split_trains(n, parts=3)
    assert [s.start for s in slices] == [0, n // 3, 2 * n // 3] and slices[-1].stop == n


# ----------------------------------------------------------------- roi_shape


@pytest.mark.parametrize("shape, roi, expected", [
    ((512, 128), (), (512, 128)),
    ((512, 128), np.s_[:, 10:20], (512, 10)),
    ((512, 128), 0, (128,)),
    ((512, 128), np.s_[..., 0], (512,)),
    ((16, 512, 128), np.s_[..., [1, 2, 3]], (16, 512, 3)),
    ((16, 512, 128), (np.array([1, 2]), slice(None), np.array([3, 4])), (2, 512)),
    ((4, 5), np.s_[np.newaxis, ::2], (1, 2, 5)),
    ((4, 5), np.zeros((4, 5), dtype=bool), (0,)),
    ((0, 5), np.s_[:, 1:3], (0, 2)),
    ((), (), ()),
])
def test_roi_shape(shape, roi, expected):
    assert roi_shape(shape, roi) == expected
    # cross-check against a real array
    assert np.zeros(shape)[roi if isinstance(roi, tuple) else (roi,)].shape == expected


def test_roi_shape_out_of_bounds():
    with pytest.raises(IndexError):
        roi_shape((4, 5), np.s_[:, 7])


def test_roi_shape_does_not_allocate_for_huge_entries():
    # A (1e6 x 1e6) float64 entry would be 8 TB: the dummy must be a stride-0 view.
    assert roi_shape((10**6, 10**6), np.s_[5:10, ::1000]) == (5, 1000)


# ----------------------------------------------------------------- awkward lists


def test_huge_ints_in_position_lists_are_out_of_range():
    # numpy would make [0, 2**64] a float64 array; it must not become a TypeError or wrap.
    for s in ([0, 2**64], [-1, 2**64], [0, 2**63]):
        with pytest.raises(IndexError):
            select_train_ids(IDS, s)


def test_huge_ints_in_by_id_lists_are_ignored_not_rounded():
    assert sel(by_id[[10003, 2**64]]) == [10003]
    assert sel(by_id[[10003, 2**63]]) == [10003]
    assert sel_warns(by_id[[-1, 2**64]], "None of the 2 requested") == []


def test_ragged_lists_are_type_errors():
    with pytest.raises(TypeError, match="ragged"):
        select_train_ids(IDS, [[1, 2], [3]])
    assert hash(by_index[[[1, 2], [3]]]) == hash(by_index[[[1, 2], [3]]])


def test_object_arrays_are_type_errors():
    with pytest.raises(TypeError, match="object"):
        select_train_ids(IDS, np.array([1, "a"], dtype=object))
    with pytest.raises(TypeError, match="object"):
        select_train_ids(IDS, by_id[np.array([10001], dtype=object)])

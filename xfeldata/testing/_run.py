"""Runs: several aggregators, each a chain of sequence files.

:class:`RunSpec` describes a run, :func:`plan_run` splits it into
:class:`FileSpec` values (pure), :func:`write_run` writes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import attrs
import numpy as np

from ._detectors import camera_source, xgm_sources, xtdf_module
from ._manifest import RunManifest, describe_file
from ._records import ControlSource, FileSpec, InstrumentSource, Key, _sources
from ._writer import write_file

__all__ = [
    "Aggregator",
    "RunSpec",
    "benchmark_run_spec",
    "demo_run_spec",
    "describe_run",
    "even_sequence_starts",
    "make_benchmark_run",
    "make_demo_run",
    "plan_run",
    "write_run",
]


def _opt_uint64(x):
    if x is None:
        return None
    a = np.array(x, dtype=np.uint64).reshape(-1)
    a.flags.writeable = False
    return a


def _opt_bool(x):
    if x is None:
        return None
    a = np.array(x, dtype=bool).reshape(-1)
    a.flags.writeable = False
    return a


_OPT_EQ = attrs.cmp_using(
    eq=lambda a, b: (a is None and b is None)
    or (a is not None and b is not None and np.array_equal(a, b))
)


def even_sequence_starts(n_trains: int, n_sequences: int, shift: int = 0) -> tuple[int, ...]:
    """Positions where sequences 1..n-1 start for an even split, shifted.

    Shifting lets aggregators break sequences at different trains; positions
    are clipped so every sequence keeps at least one train.

    >>> even_sequence_starts(100, 4)
    (25, 50, 75)
    >>> even_sequence_starts(100, 4, shift=-7)
    (18, 43, 68)
    """
    n_sequences = max(1, min(n_sequences, n_trains))
    starts = []
    prev = 0
    for k in range(1, n_sequences):
        s = (n_trains * k) // n_sequences + shift
        # Keep room for the remaining sequences and at least one train each.
        s = max(prev + 1, min(s, n_trains - (n_sequences - k)))
        starts.append(s)
        prev = s
    return tuple(starts)


@attrs.frozen(eq=True, hash=False)
class Aggregator:
    """One data aggregator of a run (``DA01``, ``AGIPD00``...).

    Parameters
    ----------
    name : str
    sources : sequence of sources
        Per-train counts are aligned with this aggregator's trains.
    sequence_starts : tuple of int
        Positions (in this aggregator's trains) where ``S00001``, ``S00002``…
        begin; empty = one file.
    train_ids : array_like, optional
        The run trains this aggregator recorded (default: all of them), e.g.
        to model a module missing a train.
    category : str, optional
        Overrides the run's category (``'RAW'``/``'CORR'``).
    file_options : mapping
        Extra :class:`FileSpec` fields for this aggregator's files.

    Examples
    --------
    >>> from xfeldata.testing import Aggregator, xtdf_module
    >>> Aggregator('AGIPD00', [xtdf_module(modno=0, frames=4)], sequence_starts=(50,)).name
    'AGIPD00'
    """

    name: str
    sources: tuple = attrs.field(converter=_sources)
    sequence_starts: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    train_ids: np.ndarray | None = attrs.field(default=None, converter=_opt_uint64, eq=_OPT_EQ)
    category: str | None = None
    file_options: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)


def _run_train_ids(x) -> np.ndarray:
    a = np.array(x, dtype=np.uint64).reshape(-1)
    if len(a) and (np.any(a == 0) or np.any(a[1:] <= a[:-1])):
        raise ValueError("run train IDs must be non-zero and strictly increasing")
    a.flags.writeable = False
    return a


@attrs.frozen(eq=True, hash=False)
class RunSpec:
    """A whole run: train IDs, aggregators and options shared by all files.

    Parameters
    ----------
    train_ids : array_like
        The run's trains (non-zero, strictly increasing).
    aggregators : sequence of Aggregator
    format_version : str
    run, proposal : int
    category : str
        ``'RAW'`` or ``'CORR'`` (aggregators may override).
    valid : array_like of bool, optional
        Per run train: False marks it suspect in every file holding it.
    file_options : mapping
        Extra :class:`FileSpec` fields for every file (``old_index``,
        ``pad_trainids_to``, ``timestamps``...).

    Examples
    --------
    >>> from xfeldata.testing import RunSpec, Aggregator, ControlSource
    >>> spec = RunSpec(range(10000, 10010), [Aggregator('DA01', [ControlSource('A/B/C', {'x': 'f8'})])])
    >>> len(spec.train_ids)
    10
    """

    train_ids: np.ndarray = attrs.field(converter=_run_train_ids, eq=attrs.cmp_using(eq=np.array_equal))
    aggregators: tuple[Aggregator, ...] = attrs.field(converter=tuple)
    format_version: str = "1.2"
    run: int = 1
    proposal: int = 700000
    category: str = "RAW"
    valid: np.ndarray | None = attrs.field(default=None, converter=_opt_bool, eq=_OPT_EQ)
    file_options: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)

    def __attrs_post_init__(self):
        names = [a.name for a in self.aggregators]
        if len(set(names)) != len(names):
            raise ValueError(f"aggregator names repeat: {names}")
        if self.valid is not None and len(self.valid) != len(self.train_ids):
            raise ValueError(f"valid has {len(self.valid)} entries for {len(self.train_ids)} trains")


def _take(src, positions):
    return src.take_trains(positions) if isinstance(src, InstrumentSource) else src


def plan_run(spec: RunSpec) -> tuple[FileSpec, ...]:
    """Split a run into file specs (pure).

    >>> from xfeldata.testing import RunSpec, Aggregator, ControlSource, plan_run
    >>> spec = RunSpec(range(1, 11), [Aggregator('DA01', [ControlSource('A/B/C', {'x': 'f8'})],
    ...                                          sequence_starts=(4,))])
    >>> [(f.filename, len(f.train_ids)) for f in plan_run(spec)]
    [('RAW-R0001-DA01-S00000.h5', 4), ('RAW-R0001-DA01-S00001.h5', 6)]
    """
    run_tids = spec.train_ids
    origin = int(run_tids[0]) if len(run_tids) else None
    files = []
    for agg in spec.aggregators:
        tids = run_tids if agg.train_ids is None else agg.train_ids
        pos = np.searchsorted(run_tids, tids)
        if len(tids) and (np.any(pos >= len(run_tids)) or np.any(run_tids[np.minimum(pos, len(run_tids) - 1)] != tids)):
            raise ValueError(f"{agg.name}: train_ids must be a subset of the run's train IDs")
        n = len(tids)
        bounds = (0,) + tuple(agg.sequence_starts) + (n,)
        if any(b <= a for a, b in pairwise(bounds)) and not (n == 0 and bounds == (0, 0)):
            raise ValueError(f"{agg.name}: sequence_starts {agg.sequence_starts} must increase "
                             f"strictly inside (0, {n})")
        for src in agg.sources:
            for g in src.index_groups:
                src.counts_for(g, n)  # clear error if per-train counts do not fit
        options = {**spec.file_options, **agg.file_options}
        for seq, (a, b) in enumerate(pairwise(bounds)):
            sel = np.arange(a, b)
            files.append(FileSpec(
                train_ids=tids[a:b],
                sources=[_take(s, sel) for s in agg.sources],
                format_version=spec.format_version,
                flag=None if spec.valid is None else spec.valid[pos[a:b]],
                timestamp_origin=origin,
                run=spec.run,
                proposal=spec.proposal,
                sequence=seq,
                category=agg.category or spec.category,
                aggregator=agg.name,
                **options,
            ))
    return tuple(files)


def describe_run(spec: RunSpec, directory=None) -> RunManifest:
    """The manifest :func:`write_run` would return (nothing is written)."""
    d = None if directory is None else os.fspath(directory)
    files = [
        describe_file(fs, None if d is None else os.path.join(d, fs.filename))
        for fs in plan_run(spec)
    ]
    return RunManifest.from_files(files, d)


def write_run(directory, spec: RunSpec | None = None, **fields) -> RunManifest:
    """Write a run folder; returns its manifest.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing; files are named ``<CAT>-R<run>-<AGG>-S<seq>.h5``.
    spec : RunSpec, optional
        The run. Without it, ``fields`` are passed to :class:`RunSpec`; with
        it, they override its fields (``attrs.evolve``).

    Examples
    --------
    >>> import tempfile
    >>> from xfeldata.testing import write_run, Aggregator, ControlSource, xtdf_module
    >>> m = write_run(tempfile.mkdtemp(), train_ids=range(10000, 10020), aggregators=[
    ...     Aggregator('DA01', [ControlSource('A/B/C', {'x': 'f8'})], sequence_starts=(8,)),
    ...     Aggregator('AGIPD00', [xtdf_module(modno=0, frames=2)], sequence_starts=(12,)),
    ... ])
    >>> len(m.files), len(m.train_ids)
    (4, 20)
    """
    if spec is None:
        spec = RunSpec(**fields)
    elif fields:
        spec = attrs.evolve(spec, **fields)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    files = [write_file(os.path.join(directory, fs.filename), fs) for fs in plan_run(spec)]
    return RunManifest.from_files(files, directory)


# -- ready-made runs --------------------------------------------------------------

def demo_run_spec(
    format_version: str = "1.2",
    n_trains: int = 100,
    first_train: int = 10000,
    run: int = 1,
    n_modules: int = 4,
    frames_per_train: int = 8,
    detector: str = "SPB_DET_AGIPD1M-1",
) -> RunSpec:
    """The :func:`make_demo_run` run, as a spec."""
    tids = np.arange(first_train, first_train + n_trains, dtype=np.uint64)
    xgm_ctrl, xgm_out = xgm_sources("SA1_XTD2_XGM/DOOCS/MAIN")
    motor = ControlSource(
        "SPB_IRU_MOTORS/MOTOR/X",
        {"actualPosition": np.float64, "targetPosition": np.float64, "isMoving": np.uint8},
        device_class="IselMotor",
    )
    settings = ControlSource(
        "SPB_IRU_DAQ/SETTINGS/RUNONLY",
        {"threshold": np.float64},
        run_only=True,
        run_keys={"digitizer.baseline_region": ":1000"},
    )
    # The camera misses every 10th train: sparse instrument data.
    cam_counts = np.where(np.arange(n_trains) % 10 == 9, 0, 1)
    cam_ctrl = ControlSource(
        "SPB_IRU_CAM/CAM/SIDEMIC",
        {"exposureTime": np.float64, "acquisitionTime": np.float32, "binningX": np.int32},
        device_class="BaslerCamera",
    )
    cam = camera_source("SPB_IRU_CAM/CAM/SIDEMIC:daqOutput", (32, 48), counts=cam_counts)
    half = n_trains // 2
    aggs = [
        Aggregator("DA01", [xgm_ctrl, xgm_out, motor, settings],
                   sequence_starts=even_sequence_starts(n_trains, 2)),
        Aggregator("DA02", [cam_ctrl, cam],
                   sequence_starts=even_sequence_starts(n_trains, 2, shift=max(1, half // 5))),
    ]
    for m in range(n_modules):
        aggs.append(Aggregator(
            f"AGIPD{m:02d}", [xtdf_module(detector, m, frames=frames_per_train, kind="AGIPD")],
            sequence_starts=even_sequence_starts(n_trains, 2, shift=-max(1, half // 5)),
        ))
    return RunSpec(tids, aggs, format_version=format_version, run=run)


def make_demo_run(directory, format_version: str = "1.2", **options) -> RunManifest:
    """Write a small demo run (about 0.3 s, ~30 MB) and return its manifest.

    Content (100 trains from 10000, sequences split around the middle at
    different trains per aggregator):

    * ``DA01``: XGM ``SA1_XTD2_XGM/DOOCS/MAIN`` (control, units attributes,
      ``state`` string, class ``DoocsXGM``) and its ``:output`` channel
      (``data.intensityTD`` f4 (1000,) in μJ...); a motor; a RUN-only
      source ``SPB_IRU_DAQ/SETTINGS/RUNONLY``;
    * ``DA02``: camera control + ``SPB_IRU_CAM/CAM/SIDEMIC:daqOutput``
      (``data.image.pixels`` u2 (32, 48), missing every 10th train);
    * ``AGIPD00``-``AGIPD03``: raw ``SPB_DET_AGIPD1M-1`` modules, 8 frames
      per train, frames (2, 64, 32) u2.

    Parameters
    ----------
    directory : str or os.PathLike
    format_version : str
    **options
        Passed to :func:`demo_run_spec` (``n_trains``, ``first_train``,
        ``run``, ``n_modules``, ``frames_per_train``, ``detector``).

    Examples
    --------
    >>> import tempfile
    >>> from xfeldata.testing import make_demo_run
    >>> m = make_demo_run(tempfile.mkdtemp())
    >>> len(m.files), len(m.train_ids)
    (12, 100)
    """
    return write_run(directory, demo_run_spec(format_version, **options))


_BENCH_KEY_TYPES = (
    ("value", Key(np.float64)),
    ("setpoint", Key(np.float32)),
    ("status.code", Key(np.int32)),
    ("vector", Key(np.float32, (8,))),
    ("state", Key(str)),
    ("counter", Key(np.uint64)),
)


def benchmark_run_spec(
    n_trains: int = 100,
    n_sequences: int = 4,
    n_modules: int = 16,
    n_control_sources: int = 150,
    frame_shape: tuple[int, int] = (64, 64),
    frames_per_train: int = 10,
    n_control_aggregators: int = 3,
    keys_per_source: int = 4,
    detector: str = "SPB_DET_AGIPD1M-1",
    kind: str = "AGIPD",
    raw: bool = True,
    compression: str | None = None,
    format_version: str = "1.2",
    first_train: int = 10000,
    run: int = 1,
) -> RunSpec:
    """The :func:`make_benchmark_run` run, as a spec."""
    tids = np.arange(first_train, first_train + n_trains, dtype=np.uint64)
    n_ctrl = max(1, n_control_aggregators)
    per_agg: list[list] = [[] for _ in range(n_ctrl)]
    xgm_ctrl, xgm_out = xgm_sources("SA1_XTD2_XGM/DOOCS/MAIN")
    per_agg[0] += [xgm_ctrl, xgm_out]
    key_types = _BENCH_KEY_TYPES[: max(1, keys_per_source)]
    for i in range(max(0, n_control_sources - 1)):
        src = ControlSource(f"BENCH_CTRL_{i // 10:02d}/DEV/D{i:03d}", dict(key_types))
        per_agg[(i + 1) % n_ctrl].append(src)
    step = max(1, n_trains // (2 * max(1, n_sequences)))
    aggs = [
        Aggregator(f"DA{a + 1:02d}", srcs,
                   sequence_starts=even_sequence_starts(n_trains, n_sequences, shift=-(a + 1) * step // n_ctrl))
        for a, srcs in enumerate(per_agg)
    ]
    prefix = {"AGIPD": "AGIPD", "LPD": "LPD", "DSSC": "DSSC"}[kind]
    for m in range(n_modules):
        mod = xtdf_module(detector, m, frames=frames_per_train, kind=kind, raw=raw,
                          frame_shape=frame_shape, compression=compression)
        aggs.append(Aggregator(f"{prefix}{m:02d}", [mod],
                               sequence_starts=even_sequence_starts(n_trains, n_sequences)))
    return RunSpec(tids, aggs, format_version=format_version, run=run,
                   category="RAW" if raw else "CORR")


def make_benchmark_run(directory, **options) -> RunManifest:
    """Write a benchmark-sized run and return its manifest.

    Defaults: 100 trains; 16 raw AGIPD modules (frames (2, 64, 64) u2, 10 per
    train) in 4 sequences each (64 files); 150 control sources (4 keys each,
    plus an XGM with its output channel) spread over 3 ``DA`` aggregators in
    4 sequences with boundaries that differ from the modules' (12 files). 76
    files, about 300 MB, written in about 4 s (mostly the ~14000 small
    control/RUN/INDEX datasets; image data is ~256 MiB).

    Parameters
    ----------
    directory : str or os.PathLike
    **options
        Passed to :func:`benchmark_run_spec`: ``n_trains``, ``n_sequences``,
        ``n_modules``, ``n_control_sources``, ``frame_shape``,
        ``frames_per_train``, ``n_control_aggregators``, ``keys_per_source``
        (1-6), ``detector``, ``kind``, ``raw``, ``compression``,
        ``format_version``, ``first_train``, ``run``.

    Examples
    --------
    >>> import tempfile
    >>> from xfeldata.testing import make_benchmark_run
    >>> m = make_benchmark_run(tempfile.mkdtemp(), n_trains=8, frames_per_train=1,
    ...                        frame_shape=(8, 8), n_control_sources=10)
    >>> len(m.files)
    76
    """
    return write_run(directory, benchmark_run_spec(**options))

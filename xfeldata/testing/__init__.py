"""Synthetic EuXFEL files and runs, for tests, property tests, demos and benchmarks.

The writer produces the HDF5 layout of every format version ("0.5", "1.0",
"1.1", "1.2", "1.3"; FORMAT.md §2) and tells exactly what it wrote, so a
reader's output can be compared with the truth. It depends only on h5py,
numpy and attrs (hypothesis for :mod:`xfeldata.testing.strategies`).

The shape is the library's: frozen records describe what to write, pure
functions derive file plans and manifests from them, and one thin function
writes a file.

Describing content
------------------
:class:`Key`
    One dataset: dtype (``str``/``bytes`` for vlen strings, structured dtypes
    allowed), entry shape, value rule (``fill``), HDF5 attributes (units),
    chunks, compression, resizable or fixed size.
:class:`ControlSource`
    A Karabo device: ``CONTROL/<dev>/<prop>/{value,timestamp}`` one entry per
    train, ``RUN/<dev>/<prop>/{value,timestamp}`` one entry; options for
    RUN-only and no-data sources, extra RUN keys and the device class.
:class:`InstrumentSource`
    An output channel in ``INSTRUMENT`` (or ``REDUCTION``/``ERRATA``) with
    index groups and per-train entry counts (0 allowed), legacy soft-link
    names and padding rows.
:func:`xtdf_module`, :func:`jungfrau_module`, :func:`xgm_sources`, :func:`camera_source`
    Ready-made sources with the real layouts.
:class:`FileSpec`
    One file: train IDs (zeros / disorder allowed for broken files), sources,
    format version, validity flags, timestamps, old ``first/last/status``
    index, padding, run/proposal/sequence/aggregator/category.
:class:`Aggregator`, :class:`RunSpec`
    A run: aggregators each split into sequence files at their own trains.

Writing
-------
:func:`write_file` (``path, FileSpec -> FileManifest``),
:func:`write_run` (``directory, RunSpec -> RunManifest``),
:func:`make_demo_run` (a small realistic run, < 1 s),
:func:`make_benchmark_run` (76 files: 16 modules x 4 sequences + 150 control
sources in 3 aggregators x 4 sequences).
:func:`plan_run`, :func:`describe_file`, :func:`describe_run` compute the
same plans and manifests without writing.

What was written
----------------
:class:`FileManifest` per file: path, format version, train IDs (without
padding), flags and validity per train, timestamps, source names by section
(legacy names and their canonical names), counts per train for every
``(source, index group)``. :class:`RunManifest` per run: the files, the sorted
union of train IDs (and of valid ones), sources, counts per run train, and
``expected(source, key, train_ids)`` giving the data a reader must return.

Values are deterministic: ``train_id * 1000 + entry + salt(source, key) +
flat_index`` cast to the dtype (see :func:`expected_values` and
:mod:`xfeldata.testing._values`). ``INDEX/timestamp`` is 2024-03-01T12:00:00Z
+ (train ID - first train ID of the run) x 100 ms.

Example
-------
>>> import tempfile, numpy as np
>>> from xfeldata.testing import (ControlSource, InstrumentSource, FileSpec,
...                               write_file)
>>> spec = FileSpec(
...     train_ids=np.arange(10000, 10005),
...     sources=[ControlSource('SA1_XTD2_XGM/DOOCS/MAIN', {'beamPosition.ixPos': np.float32}),
...              InstrumentSource('SA1_XTD2_XGM/DOOCS/MAIN:output',
...                               {'data.intensityTD': (np.float32, (10,))},
...                               groups={'data': [1, 1, 0, 2, 1]})],
...     format_version='1.1', flag=[True, True, False, True, True])
>>> m = write_file(tempfile.mkdtemp(), spec)
>>> m.flag.tolist()   # 1.1 stores the flag inverted
[0, 0, 1, 0, 0]
>>> m.counts[('SA1_XTD2_XGM/DOOCS/MAIN:output', 'data')].tolist()
[1, 1, 0, 2, 1]
"""

from ._detectors import (
    REAL_FRAME_SHAPES,
    SMALL_FRAME_SHAPES,
    UNITS_MICROJOULE,
    UNITS_MILLIMETRE,
    camera_source,
    jungfrau_module,
    xgm_sources,
    xtdf_module,
)
from ._manifest import (
    FileManifest,
    RunManifest,
    describe_file,
    flag_values,
    guess_validity_v05,
    run_value,
    validity_from_flag,
)
from ._records import (
    FORMAT_VERSIONS,
    ControlSource,
    FileSpec,
    InstrumentSource,
    Key,
    as_key,
)
from ._run import (
    Aggregator,
    RunSpec,
    benchmark_run_spec,
    demo_run_spec,
    describe_run,
    even_sequence_starts,
    make_benchmark_run,
    make_demo_run,
    plan_run,
    write_run,
)
from ._values import (
    EPOCH_NS,
    TRAIN_PERIOD_NS,
    control_timestamps,
    expected_values,
    key_salt,
    string_dtype,
    train_timestamps,
)
from ._writer import write_file

__all__ = [
    "EPOCH_NS",
    "FORMAT_VERSIONS",
    "REAL_FRAME_SHAPES",
    "SMALL_FRAME_SHAPES",
    "TRAIN_PERIOD_NS",
    "UNITS_MICROJOULE",
    "UNITS_MILLIMETRE",
    "Aggregator",
    "ControlSource",
    "FileManifest",
    "FileSpec",
    "InstrumentSource",
    "Key",
    "RunManifest",
    "RunSpec",
    "as_key",
    "benchmark_run_spec",
    "camera_source",
    "control_timestamps",
    "demo_run_spec",
    "describe_file",
    "describe_run",
    "even_sequence_starts",
    "expected_values",
    "flag_values",
    "guess_validity_v05",
    "jungfrau_module",
    "key_salt",
    "make_benchmark_run",
    "make_demo_run",
    "plan_run",
    "run_value",
    "string_dtype",
    "train_timestamps",
    "validity_from_flag",
    "write_file",
    "write_run",
    "xgm_sources",
    "xtdf_module",
]

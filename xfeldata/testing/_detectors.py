"""Ready-made sources: XTDF detector modules, JUNGFRAU modules, XGM, camera.

Layouts follow FORMAT.md §3.3 and the reference mock files.
"""

from __future__ import annotations

import numpy as np

from ._records import ControlSource, InstrumentSource, Key

__all__ = [
    "REAL_FRAME_SHAPES",
    "SMALL_FRAME_SHAPES",
    "UNITS_MICROJOULE",
    "UNITS_MILLIMETRE",
    "camera_source",
    "jungfrau_module",
    "xgm_sources",
    "xtdf_module",
]

#: Real module frame shapes (slow scan, fast scan).
REAL_FRAME_SHAPES = {"AGIPD": (512, 128), "LPD": (256, 256), "DSSC": (128, 512),
                     "JUNGFRAU": (512, 1024)}
#: Small defaults so tests stay fast.
SMALL_FRAME_SHAPES = {"AGIPD": (64, 32), "LPD": (32, 32), "DSSC": (32, 64),
                      "JUNGFRAU": (32, 64)}
_DETECTOR_BYTES = {"AGIPD": 5408, "LPD": 416, "DSSC": 416}

#: Unit attributes as Karabo writes them (pulse energy in μJ).
UNITS_MICROJOULE = {
    "unitSymbol": "J", "unitName": "joule", "metricPrefixSymbol": "u",
    "metricPrefixName": "micro", "unitEnum": np.array([15], np.int32),
    "metricPrefixEnum": np.array([14], np.int32),
}
UNITS_MILLIMETRE = {
    "unitSymbol": "m", "unitName": "meter", "metricPrefixSymbol": "m",
    "metricPrefixName": "milli",
}


def xtdf_module(
    detector: str = "SPB_DET_AGIPD1M-1",
    modno: int = 0,
    frames=64,
    kind: str = "AGIPD",
    raw: bool = True,
    corr_names: bool = False,
    legacy: bool = False,
    frame_shape: tuple[int, int] | None = None,
    compression: str | None = None,
    compression_opts=None,
) -> InstrumentSource:
    """One AGIPD/LPD/DSSC module: groups ``image``, ``header``, ``trailer``, ``detector``.

    Parameters
    ----------
    detector : str
        Detector name, e.g. ``'SPB_DET_AGIPD1M-1'``, ``'FXE_DET_LPD1M-1'``.
    modno : int
        Module number (0-based).
    frames : int or sequence of int
        Frames per train (``image`` entries); per-train values may be 0.
        ``header``/``trailer``/``detector`` have 1 entry per train.
    kind : {'AGIPD', 'LPD', 'DSSC'}
    raw : bool
        Raw layout (``image.data`` u2 with a gain/plane axis: (2, ss, fs) for
        AGIPD, (1, ss, fs) otherwise; per-frame arrays shaped ``(1,)``) or
        corrected layout (``data`` f4, ``mask`` u4 and ``gain`` u1 (ss, fs),
        gzip level 1 on mask/gain; scalar ``pulseId``/``cellId``/``trainId``;
        ``maxshape == shape``).
    corr_names : bool
        Name the source ``<det>/CORR/<n>CH0:output`` instead of
        ``<det>/DET/<n>CH0:xtdf``.
    legacy : bool
        With ``corr_names``: also expose the old ``DET/...:xtdf`` name as a
        soft link.
    frame_shape : (int, int), optional
        (ss, fs); default ``SMALL_FRAME_SHAPES[kind]``; use
        ``REAL_FRAME_SHAPES[kind]`` for real sizes.
    compression, compression_opts
        h5py compression of ``image.data`` (one frame per chunk).

    Values: ``image.pulseId`` and ``image.cellId`` = frame index within the
    train, ``image.trainId`` and ``*.trainId`` = train ID,
    ``header.pulseCount`` = frames in the train, ``image.data`` (and
    ``mask``/``gain``) the pattern rule; other header/trailer fields zeros.

    Examples
    --------
    >>> from xfeldata.testing import xtdf_module
    >>> m = xtdf_module('SPB_DET_AGIPD1M-1', 3, frames=[2, 0, 5], corr_names=True, legacy=True)
    >>> m.name, m.legacy_names
    ('SPB_DET_AGIPD1M-1/CORR/3CH0:output', ('SPB_DET_AGIPD1M-1/DET/3CH0:xtdf',))
    """
    if kind not in _DETECTOR_BYTES:
        raise ValueError(f"kind must be one of {sorted(_DETECTOR_BYTES)}, got {kind!r}")
    if legacy and not corr_names:
        raise ValueError("legacy names exist only for CORR-named sources (corr_names=True)")
    ss_fs = tuple(frame_shape) if frame_shape is not None else SMALL_FRAME_SHAPES[kind]
    old_name = f"{detector}/DET/{modno}CH0:xtdf"
    name = f"{detector}/CORR/{modno}CH0:output" if corr_names else old_name

    if raw:
        frame = ((2,) if kind == "AGIPD" else (1,)) + ss_fs
        image = {
            "image.data": Key(np.uint16, frame, chunks=(1,) + frame,
                              compression=compression, compression_opts=compression_opts),
            "image.pulseId": Key(np.uint64, (1,), fill="entry"),
            "image.cellId": Key(np.uint16, (1,), fill="entry"),
            "image.trainId": Key(np.uint64, (1,), fill="train_id"),
            "image.length": Key(np.uint32, (1,), fill="zeros"),
            "image.status": Key(np.uint16, (1,), fill="zeros"),
        }
    else:
        fixed = {"resizable": False}
        image = {
            "image.data": Key(np.float32, ss_fs, chunks=(1,) + ss_fs, compression=compression,
                              compression_opts=compression_opts, **fixed),
            "image.mask": Key(np.uint32, ss_fs, chunks=(1,) + ss_fs, compression="gzip",
                              compression_opts=1, **fixed),
            "image.gain": Key(np.uint8, ss_fs, chunks=(1,) + ss_fs, compression="gzip",
                              compression_opts=1, **fixed),
            "image.pulseId": Key(np.uint64, (), fill="entry", **fixed),
            "image.cellId": Key(np.uint16, (), fill="entry", **fixed),
            "image.trainId": Key(np.uint64, (), fill="train_id", **fixed),
            "image.length": Key(np.uint32, (1,), fill="zeros", **fixed),
            "image.status": Key(np.uint16, (1,), fill="zeros", **fixed),
        }
    zeros = {"fill": "zeros"}
    keys = {
        **image,
        "header.dataId": Key(np.uint64, **zeros),
        "header.linkId": Key(np.uint64, **zeros),
        "header.magicNumberBegin": Key(np.int8, (8,), **zeros),
        "header.majorTrainFormatVersion": Key(np.uint32, fill=2),
        "header.minorTrainFormatVersion": Key(np.uint32, fill=1),
        "header.pulseCount": Key(np.uint64, fill="count:image"),
        "header.reserved": Key(np.uint8, (16,), **zeros),
        "header.trainId": Key(np.uint64, fill="train_id"),
        "trailer.checksum": Key(np.int8, (16,), **zeros),
        "trailer.magicNumberEnd": Key(np.int8, (8,), **zeros),
        "trailer.status": Key(np.uint64, **zeros),
        "trailer.trainId": Key(np.uint64, fill="train_id"),
        "detector.data": Key(np.uint8, (_DETECTOR_BYTES[kind],)),
        "detector.trainId": Key(np.uint64, fill="train_id"),
    }
    frames_c = frames if isinstance(frames, (int, np.integer)) else np.asarray(frames)
    return InstrumentSource(
        name, keys,
        groups={"image": frames_c, "header": 1, "trailer": 1, "detector": 1},
        legacy_names=(old_name,) if legacy else (),
    )


def jungfrau_module(
    detector: str = "SPB_IRDA_JF4M",
    modno: int = 1,
    cells: int = 16,
    raw: bool = True,
    corr_names: bool = False,
    frame_shape: tuple[int, int] | None = None,
    counts=1,
) -> InstrumentSource:
    """One JUNGFRAU module: ``<det>/DET/JNGFR<nn>:daqOutput``, group ``data``.

    Parameters
    ----------
    detector : str
    modno : int
        Module number, 1-based as in real data.
    cells : int
        Memory cells per entry (16 burst mode or 1).
    raw : bool
        ``data.adc`` u2 (raw) or f4 (corrected).
    corr_names : bool
        Name the source ``<det>/CORR/JNGFR<nn>:output``.
    frame_shape : (int, int), optional
        Default ``(32, 64)``; real modules are ``(512, 1024)``.
    counts : int or sequence of int
        Entries per train (usually 1; 0 for missing trains).

    Keys: ``adc``, ``gain`` u1, ``mask`` u4 ``(cells, ss, fs)``;
    ``memoryCell`` u1 (= cell index), ``frameNumber`` u8, ``timestamp`` f8
    ``(cells,)``; plus ``data.trainId``.

    Examples
    --------
    >>> from xfeldata.testing import jungfrau_module
    >>> jungfrau_module('FXE_XAD_JF500K', 3).name
    'FXE_XAD_JF500K/DET/JNGFR03:daqOutput'
    """
    ss_fs = tuple(frame_shape) if frame_shape is not None else SMALL_FRAME_SHAPES["JUNGFRAU"]
    name = (f"{detector}/CORR/JNGFR{modno:02d}:output" if corr_names
            else f"{detector}/DET/JNGFR{modno:02d}:daqOutput")
    img = (cells,) + ss_fs
    keys = {
        "data.adc": Key(np.uint16 if raw else np.float32, img, chunks=(1, 1) + ss_fs),
        "data.gain": Key(np.uint8, img, chunks=(1, 1) + ss_fs),
        "data.mask": Key(np.uint32, img, chunks=(1, 1) + ss_fs),
        "data.memoryCell": Key(np.uint8, (cells,), fill="index"),
        "data.frameNumber": Key(np.uint64, (cells,)),
        "data.timestamp": Key(np.float64, (cells,)),
    }
    c = counts if isinstance(counts, (int, np.integer)) else np.asarray(counts)
    return InstrumentSource(name, keys, groups={"data": c})


def xgm_sources(
    name: str = "SA1_XTD2_XGM/DOOCS/MAIN", samples: int = 1000, counts=1
) -> tuple[ControlSource, InstrumentSource]:
    """An XGM: control device (units on pulse energy/positions) and ``:output``.

    Examples
    --------
    >>> from xfeldata.testing import xgm_sources
    >>> ctrl, out = xgm_sources()
    >>> out.name
    'SA1_XTD2_XGM/DOOCS/MAIN:output'
    """
    mm = {"alias": "IX.POS", "daqPolicy": np.array([-1], np.int32), **UNITS_MILLIMETRE}
    ctrl = ControlSource(
        name,
        {
            "beamPosition.ixPos": Key(np.float32, attrs=mm,
                                      value_attrs={"daqPolicy": np.array([1], np.int32)}),
            "beamPosition.iyPos": Key(np.float32, attrs=UNITS_MILLIMETRE),
            "pulseEnergy.photonFlux": Key(np.float32, attrs=UNITS_MICROJOULE,
                                          value_attrs=UNITS_MICROJOULE),
            "pulseEnergy.wavelengthUsed": np.float32,
            "pulseEnergy.nummberOfBunches": np.float32,
            "state": str,
        },
        device_class="DoocsXGM",
    )
    c = counts if isinstance(counts, (int, np.integer)) else np.asarray(counts)
    out = InstrumentSource(
        f"{name}:output",
        {
            "data.intensityTD": Key(np.float32, (samples,), attrs=UNITS_MICROJOULE),
            "data.intensityAUXTD": Key(np.float32, (samples,)),
            "data.xTD": Key(np.float32, (samples,)),
            "data.yTD": Key(np.float32, (samples,)),
        },
        groups={"data": c},
    )
    return ctrl, out


def camera_source(
    name: str = "SPB_IRU_CAM/CAM/SIDEMIC:daqOutput", shape=(32, 48), counts=1
) -> InstrumentSource:
    """A camera output channel (``data.image.pixels`` u2 plus image metadata).

    Examples
    --------
    >>> from xfeldata.testing import camera_source
    >>> camera_source(counts=[1, 0, 1]).all_keys()['data.image.pixels'].shape
    (32, 48)
    """
    c = counts if isinstance(counts, (int, np.integer)) else np.asarray(counts)
    keys = {
        "data.image.pixels": Key(np.uint16, tuple(shape)),
        "data.image.dims": Key(np.uint64, (2,), fill=tuple(shape)),
        "data.image.dimTypes": Key(np.int32, (2,), fill="zeros"),
        "data.image.bitsPerPixel": Key(np.int32, fill=16),
        "data.image.encoding": Key(np.int32, fill="zeros"),
        "data.image.roiOffsets": Key(np.uint64, (2,), fill="zeros"),
        "data.image.binning": Key(np.uint64, (2,), fill=(1, 1)),
        "data.image.flipX": Key(np.uint8, fill="zeros"),
        "data.image.flipY": Key(np.uint8, fill="zeros"),
    }
    return InstrumentSource(name, keys, groups={"data": c})

"""Effects: execute read plans against HDF5 files.

One preallocated output; each step is one contiguous hyperslab read with
``read_direct`` straight into its destination rows (no intermediate copies).
"""
from __future__ import annotations

import h5py
import numpy as np

from .core.plan import ReadPlan, roi_from_key
from .exceptions import FileStructureError

__all__ = ['execute']


def _decode_strings(arr):
    """vlen strings come back from h5py as bytes objects: decode once, here."""
    flat = arr.reshape(-1)
    for i, v in enumerate(flat):
        if isinstance(v, bytes):
            flat[i] = v.decode('utf-8', 'surrogateescape')
    return arr


def execute(plan: ReadPlan, out=None) -> np.ndarray:
    """Read everything ``plan`` describes into one array (``out`` if given)."""
    from ._tiers import h5file
    if out is None:
        out = np.empty(plan.shape, dtype=plan.dtype)
    elif out.shape != plan.shape:
        raise ValueError(f"requires output array of shape {plan.shape}, got {out.shape}")
    roi = roi_from_key(plan.roi) if plan.roi else ()
    for step in plan.steps:
        f = h5file(step.path)
        ds = f.get(step.dataset)
        if not isinstance(ds, h5py.Dataset):
            raise FileStructureError(f"no dataset {step.dataset}", step.path)
        if step.src_stop > ds.shape[0]:
            raise FileStructureError(
                f"INDEX points past the end of {step.dataset}: rows "
                f"{step.src_start}:{step.src_stop} of {ds.shape[0]}", step.path)
        dst = out[step.dst_start:step.dst_stop]
        try:
            if roi == () and plan.dtype.kind != 'O' and dst.flags.c_contiguous \
                    and step.n_rows > 0:
                ds.read_direct(dst, source_sel=np.s_[step.src_start:step.src_stop])
            else:
                dst[...] = ds[(slice(step.src_start, step.src_stop),) + roi]
        except (OSError, RuntimeError) as e:
            raise FileStructureError(f"cannot read {step.dataset} rows "
                                     f"{step.src_start}:{step.src_stop}: {e}",
                                     step.path) from None
    if plan.dtype.kind == 'O':
        _decode_strings(out)
    return out

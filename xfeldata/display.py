"""Text summaries of a collection: ``info()``, ``detector_info()``, ``train_info()``.

Everything here is answered from the index (train IDs, source lists, INDEX
counts, key catalogues); no data is read. The text is built by functions that
return strings, so tests compare it exactly; the public methods print it.

Sections of ``info()`` (API.md section 24), in order: train summary; XTDF
detectors (only without details or counts); instrument sources; control
sources; legacy names; auxiliary sources (on request).
"""
from __future__ import annotations

import fnmatch
import re
import warnings
from collections import defaultdict

import numpy as np

from .core.names import DETECTOR_SOURCE_RE

__all__ = ['InfoPrinter', 'SourceGroup', 'SourceInfoFormatter', 'group_sources',
           'format_duration', 'detector_info', 'format_train_info', 'format_auxiliary']

_TOKEN_RE = re.compile(r'\d+|[A-Za-z]+|[^A-Za-z0-9]+')


def format_duration(train_ids) -> str:
    """Time spanned by sorted train IDs (10 Hz) as ``H:MM:SS.d``.

    >>> format_duration([10000, 10599])
    '0:01:00.0'
    >>> format_duration([])
    '0:00:00.0'
    """
    if len(train_ids) == 0:
        return '0:00:00.0'
    tenths = int(train_ids[-1]) - int(train_ids[0]) + 1
    if tenths > 10 * 86400 * 3650:
        # Corrupt train IDs (e.g. one huge stray ID) give absurd spans: say so
        # instead of printing a number of years.
        return '(too long: the train IDs are probably wrong)'
    secs, tenth = divmod(tenths, 10)
    mins, sec = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    return f'{hours}:{mins:02d}:{sec:02d}.{tenth}'


# -- grouping source names --------------------------------------------------------

def _ranges(values: list) -> str:
    """``['0', '1', '2', '5']`` -> ``'0-2,5'`` (zero padding kept)."""
    first = min(values, key=int)
    # Zero-padded numbers (AGIPD00) keep their width; plain ones (0CH0) have none.
    width = len(first) if first.startswith('0') and len(first) > 1 else 0
    nums = sorted(int(v) for v in values)
    parts, start = [], nums[0]
    for a, b in zip(nums, nums[1:] + [None]):
        if b != a + 1:
            parts.append(f'{start:0{width}d}' if start == a else
                         f'{start:0{width}d}-{a:0{width}d}')
            start = b
    return ','.join(parts)


class SourceGroup:
    """Source names that differ in exactly one piece, shown as one pattern.

    Pieces are runs of digits, runs of letters, and runs of other characters.

    >>> g = SourceGroup([f'DET/{i}CH0:xtdf' for i in range(16)], 1)
    >>> str(g)
    'DET/{0-15}CH0:xtdf'
    >>> str(SourceGroup(['CAM/A:out', 'CAM/B:out'], 2))
    'CAM/{A,B}:out'
    """

    def __init__(self, names, position: int):
        self.names = sorted(names)
        self.position = position

    def __len__(self):
        return len(self.names)

    def __str__(self):
        toks = [_TOKEN_RE.findall(n) for n in self.names]
        varying = [t[self.position] for t in toks]
        if all(v.isdigit() for v in varying):
            mid = _ranges(varying)
        else:
            mid = ','.join(sorted(set(varying)))
        t0 = toks[0]
        return ''.join(t0[:self.position]) + '{' + mid + '}' + ''.join(t0[self.position + 1:])


def group_sources(names) -> list:
    """Group names differing in one piece; returns sorted ``str`` or SourceGroup items.

    The largest groups are formed first; a name joins at most one group, and
    a "group" of one stays a plain name.

    >>> [str(x) for x in group_sources(['A/1:x', 'A/2:x', 'A/3:x', 'B'])]
    ['A/{1-3}:x', 'B']
    """
    names = sorted(set(names))
    toks = {n: _TOKEN_RE.findall(n) for n in names}
    candidates = defaultdict(list)
    for n, t in toks.items():
        for i in range(len(t)):
            candidates[(len(t), i, tuple(t[:i]), tuple(t[i + 1:]))].append(n)
    taken, out = set(), []
    for key, members in sorted(candidates.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        free = [m for m in members if m not in taken]
        if len(free) < 2:
            continue
        taken.update(free)
        out.append(SourceGroup(free, key[1]))
    out.extend(n for n in names if n not in taken)
    return sorted(out, key=lambda x: x.names[0] if isinstance(x, SourceGroup) else x)


# -- per-source details -------------------------------------------------------------

def _counts_line(counts: np.ndarray, n_trains: int) -> str:
    with_data = int(np.count_nonzero(counts))
    pct = 100 * with_data / n_trains if n_trains else 0.0
    if with_data:
        nz = counts[counts > 0]
        lo, hi = int(nz.min()), int(nz.max())
        if lo == hi:
            per = f"{lo} {'entry' if lo == 1 else 'entries'} per train"
        else:
            per = f'{lo}-{hi} entries per train'
    else:
        per = 'no entries'
    return f'data for {with_data} trains ({pct:.2f}%), {per}'


class SourceInfoFormatter:
    """Lines describing one source: data counts per index group and keys.

    Parameters
    ----------
    src : SourceData
    key_aliases : mapping, optional
        ``{key: [alias, ...]}`` shown after key names.
    """

    def __init__(self, src, key_aliases=None):
        self.src = src
        self.key_aliases = key_aliases or {}

    def src_data_detail(self, group) -> str:
        counts = self.src.data_counts(labelled=False, index_group=group)
        return _counts_line(counts, len(self.src.train_ids))

    def _key_line(self, key, shown) -> str:
        kd = self.src[key]
        al = self.key_aliases.get(key)
        al = f" <{', '.join(al)}>" if al else ''
        return f'- {shown}{al}\t[{kd.dtype}, entry shape {kd.entry_shape}]'

    def keys_detail(self, keys=None) -> list:
        sd = self.src
        keys = sorted(sd.keys() if keys is None else keys)
        if sd.is_control:
            return [self._key_line(k, k[:-6]) for k in keys if k.endswith('.value')]
        return [self._key_line(k, k) for k in keys]

    def run_only_keys_detail(self) -> list:
        try:
            run_keys = self.src.run_keys(inc_timestamps=False)
        except Exception:
            return []
        ctrl = self.src.keys(inc_timestamps=False)
        return sorted(run_keys - ctrl)

    def details(self, counts_only=False) -> list:
        sd = self.src
        lines = []
        for g in sorted(sd.index_groups):
            head = f'{g}: ' if g else ''
            lines.append(f'    {head}{self.src_data_detail(g)}')
            if counts_only:
                continue
            keys = [k for k in sd.keys() if sd.is_control or k.partition('.')[0] == g]
            lines += [f'      {x}' for x in self.keys_detail(keys)]
        if not counts_only and sd.is_control:
            extra = self.run_only_keys_detail()
            if extra:
                lines.append('    additional run keys:')
                lines += [f'      - {k}' for k in extra]
        return lines


# -- detectors ----------------------------------------------------------------------

def detector_info(sd) -> dict:
    """``dims``, ``frames_per_train`` and ``total_frames`` of one XTDF module.

    Frames per train is the largest non-zero ``image`` count in the first file
    (as EXtra-data); a warning says when counts vary.
    """
    from . import _tiers
    dims = sd['image.data'].entry_shape[-2:]
    fi = sd._files[0]
    si = _tiers.source_index(fi, sd._hdf5_name(), sd.section)
    counts = np.asarray(si.group('image')[1]) if 'image' in si.groups else np.zeros(0)
    nz = np.unique(counts[counts > 0])
    if len(nz) > 1:
        warnings.warn(f"Varying number of frames per train: {nz.tolist()}")
    fpt = int(nz.max()) if len(nz) else 0
    return {'dims': tuple(dims), 'frames_per_train': fpt,
            'total_frames': fpt * len(sd.train_ids)}


def _xtdf_detectors(dc) -> dict:
    """``{detector name: [module sources]}`` for sources with ``image.data``."""
    out = defaultdict(list)
    for s in sorted(dc.detector_sources):
        m = DETECTOR_SOURCE_RE.match(s)
        if m and 'image.data' in dc[s].keys():
            # The detector is the device domain: SPB_DET_AGIPD1M-1/DET -> SPB_DET_AGIPD1M-1
            out[m.group(1).rsplit('/', 1)[0]].append(s)
    return dict(out)


def _detector_lines(dc, dets) -> list:
    lines = []
    for name, mods in sorted(dets.items()):
        info = detector_info(dc[mods[0]])
        dims = ' x '.join(str(d) for d in info['dims'])
        lines += [f'{len(mods)} XTDF detector modules of {name}',
                  f'  e.g. module {mods[0]} : {dims} pixels',
                  f"  {info['frames_per_train']} frames per train, "
                  f"{info['total_frames']} total frames", '']
    return lines


# -- info() -------------------------------------------------------------------------

class InfoPrinter:
    """Builds and prints ``DataCollection.info()``.

    Parameters
    ----------
    dc : DataCollection
    details_for_sources : str or sequence of str
        Glob patterns: matching sources get per-index-group counts and keys.
    with_aggregators : bool
        Show ``[AGG]`` after each source.
    data_counts : bool
        Show the per-index-group data line for every source.
    group_sources : bool
        Collapse names differing in one piece (``{0-15}``) when nothing per
        source is shown.
    """

    def __init__(self, dc, details_for_sources=(), with_aggregators=False,
                 data_counts=False, group_sources=True):
        if isinstance(details_for_sources, str):
            details_for_sources = [details_for_sources]
        self.dc = dc
        self.details_for_sources = tuple(details_for_sources)
        self.with_aggregators = with_aggregators
        self.data_counts = data_counts
        self.group_sources = group_sources
        self._source_aliases = defaultdict(list)
        self._key_aliases = defaultdict(lambda: defaultdict(list))
        for alias, target in dc._aliases:
            if isinstance(target, str):
                self._source_aliases[target].append(alias)
            else:
                self._key_aliases[target[0]][target[1]].append(alias)

    def _detailed(self, src) -> bool:
        return any(fnmatch.fnmatchcase(src, p) for p in self.details_for_sources)

    def _label(self, name, aggregator=None) -> str:
        out = name
        if self.with_aggregators and aggregator:
            out += f' [{aggregator}]'
        al = self._source_aliases.get(name)
        if al:
            out += f" <{', '.join(sorted(al))}>"
        return out

    def _source_lines(self, names) -> list:
        dc = self.dc
        per_source = bool(self.details_for_sources) or self.data_counts or self.with_aggregators
        aliased = set(self._source_aliases)
        lines = []
        if self.group_sources and not per_source:
            for item in group_sources(n for n in names if n not in aliased):
                lines.append(f'  - {item}')
            lines += [f'  - {self._label(n)}' for n in sorted(aliased & set(names))]
            return sorted(lines, key=lambda s: s.lstrip(' -').replace('{', ''))
        for n in sorted(names):
            sd = dc[n]
            lines.append(f'  - {self._label(n, sd.aggregator)}')
            if self._detailed(n):
                lines += SourceInfoFormatter(sd, self._key_aliases.get(n)).details()
            elif self.data_counts:
                lines += SourceInfoFormatter(sd).details(counts_only=True)
        return lines

    def format(self, with_auxiliary=False) -> str:
        """The text :meth:`show` prints."""
        dc = self.dc
        tids = dc._selection.train_ids
        lines = [f'# of trains:    {len(tids)}',
                 f'Duration:       {format_duration(tids)}',
                 f"First train ID: {int(tids[0]) if len(tids) else '-'}",
                 f"Last train ID:  {int(tids[-1]) if len(tids) else '-'}", '']
        legacy = dc._index.legacy_sources
        inst = {s for s in dc.instrument_sources if s not in legacy}
        if not (self.details_for_sources or self.data_counts):
            dets = _xtdf_detectors(dc)
            lines += _detector_lines(dc, dets)
            modules = {m for mods in dets.values() for m in mods}
            inst -= modules
            head = (f'{len(inst)} instrument sources (excluding XTDF detectors):'
                    if modules else f'{len(inst)} instrument sources:')
        else:
            head = f'{len(inst)} instrument sources:'
        lines += [head, *self._source_lines(inst), '']
        ctrl = dc.control_sources
        lines += [f'{len(ctrl)} control sources:', *self._source_lines(ctrl)]
        shown_legacy = {k: v for k, v in legacy.items() if k in dc.all_sources}
        if shown_legacy:
            lines += ['', f'{len(shown_legacy)} legacy source names:']
            for item in group_sources(shown_legacy):
                if isinstance(item, SourceGroup):
                    canon = SourceGroup([shown_legacy[n] for n in item.names], item.position)
                    lines.append(f'  - {item} -> {canon}')
                else:
                    lines.append(f'  - {item} -> {shown_legacy[item]}')
        if with_auxiliary:
            lines += ['', format_auxiliary(dc.auxiliary, self.details_for_sources,
                                           self.with_aggregators)]
        return '\n'.join(lines)

    def show(self, with_auxiliary=False):
        """Print the summary."""
        print(self.format(with_auxiliary))


def format_auxiliary(aux, details_for_sources=(), with_aggregators=False) -> str:
    """The text of ``AuxiliaryIndexer.info()``."""
    if isinstance(details_for_sources, str):
        details_for_sources = [details_for_sources]
    names = sorted(aux.all_sources)
    lines = [f'{len(names)} auxiliary sources:']
    for n in names:
        label = n
        if with_aggregators:
            label += f' [{aux._aggregator_of(n)}]'
        lines.append(f'  - {label}')
        if any(fnmatch.fnmatchcase(n, p) for p in details_for_sources):
            lines += SourceInfoFormatter(aux[n]).details()
    return '\n'.join(lines)


# -- train_info ---------------------------------------------------------------------

def format_train_info(dc, train_id) -> str:
    """Sources with data in one train (from the INDEX counts).

    Raises
    ------
    ValueError
        If ``train_id`` is not among the selected trains.
    """
    tids = dc._selection.train_ids
    tid = int(train_id)
    pos = int(np.searchsorted(tids, tid))
    if pos >= len(tids) or int(tids[pos]) != tid:
        raise ValueError(f"Train ID {train_id} not found in this data")
    one = dc.select_trains(np.s_[pos:pos + 1])
    legacy = dc._index.legacy_sources

    def with_data(names):
        return [s for s in sorted(names)
                if s not in legacy and one[s].data_counts(labelled=False)[0] > 0]

    inst, ctrl = with_data(dc.instrument_sources), with_data(dc.control_sources)
    lines = [f'Train {tid}', f'{len(inst)} instrument sources with data:']
    lines += [f'  - {s}' for s in inst]
    lines += [f'{len(ctrl)} control sources with data:']
    lines += [f'  - {s}' for s in ctrl]
    return '\n'.join(lines)

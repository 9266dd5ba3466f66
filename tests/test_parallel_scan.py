"""Scanning many files in worker processes gives what scanning in-process gives."""
import os
import warnings

import numpy as np
import pytest

import xfeldata
from xfeldata import _scan_worker, _tiers
from xfeldata.testing import (Aggregator, ControlSource, RunSpec, even_sequence_starts,
                              write_run)


@pytest.fixture
def run_dir(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv('XFELDATA_CACHE', 'off')
    monkeypatch.setenv('XFELDATA_NO_RUN_MAP_WRITE', '1')
    srcs = [ControlSource('SA1_XTD2/MDL/X', {'x': np.float32})]
    d = tmp_path / 'r0001'
    spec = RunSpec(np.arange(10000, 10012), [Aggregator(
        'DA01', srcs, sequence_starts=even_sequence_starts(12, 6))], format_version='1.1')
    write_run(d, spec)
    (d / 'RAW-R0001-DA02-S00000.h5').write_bytes(b'not an HDF5 file')
    return d


def _open(run_dir, procs, monkeypatch):
    monkeypatch.setenv('XFELDATA_SCAN_PROCESSES', str(procs))
    _tiers.MEMO.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        run = xfeldata.RunDirectory(run_dir)
    return run, sorted(str(w.message) for w in caught)


def test_processes_give_the_same_records_and_warnings(run_dir, monkeypatch, capfd):
    serial, w_serial = _open(run_dir, 0, monkeypatch)
    parallel, w_parallel = _open(run_dir, 3, monkeypatch)
    assert [f.filename for f in parallel.files] == [f.filename for f in serial.files]
    assert parallel._index.files == serial._index.files
    assert parallel == serial
    # The bad file is skipped with the same warning; format 1.1 warns per file.
    assert w_parallel == w_serial
    assert any('Skipping file' in w and 'DA02' in w for w in w_parallel)
    assert sum('1.1' in w for w in w_parallel) == 6
    # The records are in the memo, as after a serial scan.
    assert all(fi.path in _tiers.MEMO.index for fi in parallel._index.files)


def test_failed_workers_fall_back_to_serial(run_dir, monkeypatch):
    def broken(paths, n):
        raise RuntimeError('no workers here')
    monkeypatch.setattr(_scan_worker, 'scan_in_processes', broken)
    run, caught = _open(run_dir, 2, monkeypatch)
    assert any('serially' in w for w in caught)
    assert len(run.files) == 6


def test_number_of_processes(monkeypatch):
    monkeypatch.delenv('XFELDATA_SCAN_PROCESSES', raising=False)
    assert _scan_worker.n_scan_processes(10) == 0          # not worth a process
    n = _scan_worker.n_scan_processes(100_000)
    assert n == 0 or 2 <= n <= _scan_worker.MAX_PROCESSES
    monkeypatch.setenv('XFELDATA_SCAN_PROCESSES', '4')
    assert _scan_worker.n_scan_processes(3) == 3
    monkeypatch.setenv('XFELDATA_SCAN_PROCESSES', 'x')
    with pytest.raises(ValueError, match='XFELDATA_SCAN_PROCESSES'):
        _scan_worker.n_scan_processes(3)


def test_worker_script_needs_no_main_guard(tmp_path, run_dir):
    # A user script without `if __name__ == '__main__'` opening a big run:
    # workers are plain subprocesses, so the script is not run again in them.
    script = tmp_path / 'analysis.py'
    marker = tmp_path / 'ran'
    script.write_text(
        "import os, warnings, xfeldata\n"
        f"open({str(marker)!r}, 'a').write('x')\n"
        "os.environ['XFELDATA_SCAN_PROCESSES'] = '2'\n"
        "warnings.simplefilter('ignore')\n"
        f"print(len(xfeldata.RunDirectory({str(run_dir)!r}).files))\n")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, XFELDATA_CACHE='off'))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '6'
    assert marker.read_text() == 'x'

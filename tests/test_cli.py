"""The ``xfeldata`` command and its subcommands ls, validate, check-readable, locality.

Each subcommand's ``main(argv)`` is called in-process (output and exit codes
checked); a few subprocess tests run the installed ``xfeldata`` command.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from xfeldata import cli
from xfeldata.cli import check_readable, lsxfel
from xfeldata.testing import make_demo_run

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))
CORPUS = CORPUS.resolve()
needs_corpus = pytest.mark.skipif(not (CORPUS / 'example_consumer.py').is_file(),
                                  reason='corpus absent')

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp('p700000') / 'raw' / 'r0001'
    make_demo_run(d)
    return d


def run_cli(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# -- the dispatcher ---------------------------------------------------------------

def test_top_level_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(['--help'])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for name in ('ls', 'validate', 'check-readable', 'locality', 'demo'):
        assert name in out


def test_version_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(['--version'])
    assert ei.value.code == 0
    assert 'xfeldata' in capsys.readouterr().out
    with pytest.raises(SystemExit) as ei:
        cli.main(['no-such-command'])
    assert ei.value.code == 2


@pytest.mark.parametrize('name', ['ls', 'validate', 'check-readable', 'locality'])
def test_subcommand_help(capsys, name):
    with pytest.raises(SystemExit) as ei:
        cli.main([name, '--help'])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: xfeldata {name}')
    assert 'Exit status' in out or name == 'ls' and 'Exit status' in out


def test_module_paths():
    # EXtra-data's module paths of the entry points (API.md section 16).
    import xfeldata.locality
    import xfeldata.lsxfel
    import xfeldata.validation
    assert xfeldata.lsxfel.main is lsxfel.main
    for mod in (xfeldata.validation, xfeldata.locality, check_readable, lsxfel):
        assert callable(mod.main)


# -- ls -------------------------------------------------------------------------------

def test_ls_run(capsys, demo):
    rc, out, err = run_cli(capsys, 'ls', demo)
    assert rc == 0
    assert 'Run directory' in out
    assert '# of trains:    100' in out
    assert 'First train ID: 10000' in out
    assert 'control sources:' in out


def test_ls_filters_and_details(capsys, demo):
    import xfeldata
    n_all = len(xfeldata.RunDirectory(demo).all_sources)
    rc, out, _ = run_cli(capsys, 'ls', demo, '-d', 'XGM')
    assert rc == 0
    assert f'Showing 2 / {n_all} sources' in out
    assert '- data.intensityTD\t[float32, entry shape (1000,)]' in out
    assert 'data for 100 trains (100.00%)' in out
    # A glob pattern is used as it is (no '*' added): exact name.
    rc, out, _ = run_cli(capsys, 'ls', demo, '-s', '*/MAIN')
    assert f'Showing 1 / {n_all} sources' in out and 'data.intensityTD' not in out
    assert f'  - {XGM}\n' in out and ':output' not in out
    rc, out, err = run_cli(capsys, 'ls', demo, '-s', 'NOTHING_LIKE_THIS')
    assert rc == 1 and 'No sources match' in err


def test_ls_options(capsys, demo):
    rc, grouped, _ = run_cli(capsys, 'ls', demo)
    rc, ungrouped, _ = run_cli(capsys, 'ls', demo, '--no-group', '-c')
    assert rc == 0 and ungrouped != grouped
    assert 'entry per train' in ungrouped or 'entries per train' in ungrouped
    rc, out, _ = run_cli(capsys, 'ls', demo, '-g')
    assert '[DA01]' in out


def test_ls_file_and_aliases(capsys, demo, tmp_path):
    f = demo / 'RAW-R0001-DA01-S00000.h5'
    alias_file = tmp_path / 'aliases.yml'
    alias_file.write_text(f"xgm: {XGM}\n")
    rc, out, _ = run_cli(capsys, 'ls', f, '--aliases', alias_file)
    assert rc == 0 and 'HDF5 file' in out and '<xgm>' in out


def test_ls_default_alias_file_of_proposal(capsys, demo):
    usr = demo.parent.parent / 'usr'
    usr.mkdir(exist_ok=True)
    (usr / 'extra-data-aliases.yml').write_text(f"beam-monitor: {XGM}\n")
    try:
        rc, out, _ = run_cli(capsys, 'ls', demo)
    finally:
        shutil.rmtree(usr)
    assert rc == 0 and '<beam-monitor>' in out


def test_ls_proposal_and_several_paths(capsys, demo, tmp_path):
    rc, out, _ = run_cli(capsys, 'ls', demo.parent)
    assert rc == 0
    assert 'r0001: Run of 100 trains, with 8 detector files and 4 others' in out
    rc, out, _ = run_cli(capsys, 'ls', demo.parent.parent)
    assert rc == 0 and 'Proposal folder' in out and 'r0001: Run of 100 trains' in out
    rc, out, _ = run_cli(capsys, 'ls', demo, demo / 'RAW-R0001-DA01-S00000.h5')
    assert rc == 0 and out.count('\n') == 2 and 'HDF5 file: 50 trains' in out
    (tmp_path / 'notes.txt').write_text('x')
    rc, out, _ = run_cli(capsys, 'ls', demo, tmp_path / 'notes.txt', tmp_path / 'missing')
    assert rc == 2
    assert 'notes.txt: Unrecognised file' in out and 'missing: Not found' in out


def test_ls_unrecognised_single_paths(capsys, tmp_path):
    rc, _, err = run_cli(capsys, 'ls', tmp_path / 'missing')
    assert rc == 2 and 'not found' in err
    rc, _, err = run_cli(capsys, 'ls', tmp_path)
    assert rc == 2 and 'Unrecognised folder' in err
    (tmp_path / 'x.txt').write_text('x')
    rc, _, err = run_cli(capsys, 'ls', tmp_path / 'x.txt')
    assert rc == 2 and 'Unrecognised' in err


def test_ls_bad_file_is_an_error_message(capsys, tmp_path):
    p = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    p.write_bytes(b'garbage' * 100)
    rc, out, err = run_cli(capsys, 'ls', p)
    assert rc == 1
    assert 'FileOpenError' in err and p.name in err and 'Traceback' not in err


def test_ls_default_path_is_cwd(capsys, demo, monkeypatch):
    monkeypatch.chdir(demo)
    rc, out, _ = run_cli(capsys, 'ls')
    assert rc == 0 and '# of trains:    100' in out


@needs_corpus
def test_ls_auxiliary(capsys):
    rc, out, _ = run_cli(capsys, 'ls', CORPUS / 'reduced_spb_raw_v1.2', '-x')
    assert rc == 0 and 'auxiliary sources:' in out
    rc, out, _ = run_cli(capsys, 'ls', CORPUS / 'reduced_spb_raw_v1.2')
    assert 'auxiliary sources:' not in out


# -- validate ---------------------------------------------------------------------------

def test_validate_ok_and_problems(capsys, tmp_path):
    make_demo_run(tmp_path)
    f = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    rc, out, _ = run_cli(capsys, 'validate', f)
    assert rc == 0 and out.strip() == 'No problems found'
    rc, out, err = run_cli(capsys, 'validate', tmp_path, '-j', '1')
    assert rc == 0 and 'No problems found' in out
    assert '12 files' in err and '[' not in err   # no progress bar: stderr is not a tty
    with h5py.File(f, 'r+') as h:
        h['INDEX/trainId'][3] = 5
    rc, out, _ = run_cli(capsys, 'validate', f)
    assert rc == 1
    assert 'Validation found 1 problem:' in out
    assert 'Train IDs are not strictly increasing, e.g. at 2' in out
    rc, out, _ = run_cli(capsys, 'validate', f, '--skip', 'train_ids_order')
    assert rc == 0


def test_validate_list_skip_and_usage(capsys, tmp_path):
    rc, out, _ = run_cli(capsys, 'validate', '-l')
    assert rc == 0
    for name in ('train_ids_nonzero', 'index_control', 'run_json_cache', 'source_conflicts'):
        assert f'  {name}' in out
    rc, _, err = run_cli(capsys, 'validate', tmp_path, '--skip', 'bogus')
    assert rc == 1 and 'bogus' in err
    rc, _, err = run_cli(capsys, 'validate', tmp_path / 'missing.h5')
    assert rc == 2 and 'no such file' in err
    rc, _, err = run_cli(capsys, 'validate')
    assert rc == 2 and 'PATH is required' in err
    rc, _, err = run_cli(capsys, 'validate', tmp_path, '-j', '0')
    assert rc == 2
    with pytest.raises(SystemExit) as ei:
        cli.main(['validate', str(tmp_path), '-j', 'many'])
    assert ei.value.code == 2


def test_validate_bad_inputs(capsys, tmp_path):
    rc, out, _ = run_cli(capsys, 'validate', tmp_path)   # empty folder
    assert rc == 1 and 'No usable files found' in out
    p = tmp_path / 'x.h5'
    p.write_bytes(b'\0' * 64)
    rc, out, _ = run_cli(capsys, 'validate', p)
    assert rc == 1 and 'Could not open HDF5 file' in out and 'x.h5' in out


def test_validate_interrupted(capsys, tmp_path, monkeypatch):
    make_demo_run(tmp_path)
    from xfeldata import validation

    def interrupt(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(validation.RunValidator, 'check_files', interrupt)
    rc, _, err = run_cli(capsys, 'validate', tmp_path)
    assert rc == 130 and 'cancelled' in err


# -- check-readable ---------------------------------------------------------------------

@pytest.mark.parametrize('cores, expected', [(None, None), (0, 1), (1, 1), (2, 2), (3, 3),
                                             (100, 32)])
def test_check_readable_workers_never_zero(cores, expected, monkeypatch):
    if cores is None:
        import xfeldata.utils
        monkeypatch.setattr(xfeldata.utils, 'available_cpu_cores', lambda: 1)
        assert check_readable.n_workers() == 1
    else:
        assert check_readable.n_workers(cores) == expected


def test_check_readable(capsys, tmp_path, demo):
    rc, out, _ = run_cli(capsys, 'check-readable', demo, '-j', '2')
    assert rc == 0 and '12 of 12 files readable' in out and 'Access time' in out
    bad = tmp_path / 'bad.h5'
    bad.write_text('not hdf5')
    fifo = tmp_path / 'hangs.h5'
    os.mkfifo(fifo)   # opening it blocks until a writer comes: a hanging file
    (tmp_path / '.(get)(tape.h5)(locality)').write_text('NEARLINE\n')
    (tmp_path / 'tape.h5').write_text('')
    shutil.copy(demo / 'RAW-R0001-DA01-S00000.h5', tmp_path / 'good.h5')
    rc, out, _ = run_cli(capsys, 'check-readable', bad, fifo, tmp_path / 'tape.h5',
                         tmp_path / 'good.h5', '--timeout', '1', '-j', '2')
    assert rc == 1
    assert '1 of 4 files readable' in out
    rows = [re.match(r'(\w+) +(\w+) +(\S+): ', ln) for ln in out.splitlines()]
    lines = {m[3]: [m[1], m[2]] for m in rows if m and m[1] != 'status'}
    assert lines == {str(bad): ['error', 'open'], str(fifo): ['timeout', 'open'],
                     str(tmp_path / 'tape.h5'): ['unavailable', 'locality']}


def test_check_readable_finds_files(tmp_path):
    (tmp_path / 'a.h5').write_text('')
    (tmp_path / 'b.txt').write_text('')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'c.h5').write_text('')
    (tmp_path / '.(get)(a.h5)(locality)').write_text('ONLINE')
    names = lambda ps: sorted(os.path.relpath(p, tmp_path) for p in ps)  # noqa: E731
    assert names(check_readable.find_files([tmp_path])) == ['a.h5']
    assert names(check_readable.find_files([tmp_path], recursive=True)) == ['a.h5', 'sub/c.h5']
    assert names(check_readable.find_files([tmp_path], all_files=True)) == ['a.h5', 'b.txt']


def test_check_readable_usage(capsys, tmp_path):
    rc, _, err = run_cli(capsys, 'check-readable', tmp_path / 'missing')
    assert rc == 2 and 'not found' in err
    rc, _, err = run_cli(capsys, 'check-readable', tmp_path)
    assert rc == 2 and 'no files' in err
    rc, _, err = run_cli(capsys, 'check-readable', tmp_path, '--timeout', '0')
    assert rc == 2


# -- locality ---------------------------------------------------------------------------

def test_locality_cli(capsys, tmp_path):
    for name in ('a.h5', 'b.h5'):
        (tmp_path / name).write_text('')
    rc, out, _ = run_cli(capsys, 'locality', tmp_path)
    assert rc == 0 and 'NOT_ON_DCACHE: 2' in out
    (tmp_path / '.(get)(b.h5)(locality)').write_text('NEARLINE\n')
    rc, out, _ = run_cli(capsys, 'locality', tmp_path)
    assert rc == 1 and 'Only on tape (1):' in out and str(tmp_path / 'b.h5') in out
    rc, _, err = run_cli(capsys, 'locality', tmp_path / 'missing')
    assert rc == 255 and 'no such file' in err


# -- the installed command ----------------------------------------------------------

def _xfeldata_cmd():
    exe = shutil.which('xfeldata') or str(Path(sys.executable).parent / 'xfeldata')
    if not os.path.exists(exe):
        pytest.skip('xfeldata command not installed')
    return exe


def test_installed_command_smoke(tmp_path):
    exe = _xfeldata_cmd()
    r = subprocess.run([exe, '--version'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith('xfeldata ')
    make_demo_run(tmp_path)
    with h5py.File(tmp_path / 'RAW-R0001-DA01-S00000.h5', 'r+') as f:
        f[f'INDEX/{XGM}/first'][0] = 1
    r = subprocess.run([exe, 'validate', str(tmp_path / 'RAW-R0001-DA01-S00000.h5')],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Index doesn't start at 0" in r.stdout
    r = subprocess.run([exe, 'ls', str(tmp_path / 'nope')], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and 'not found' in r.stderr and r.stdout == ''


def test_python_m_lsxfel(tmp_path):
    make_demo_run(tmp_path)
    r = subprocess.run([sys.executable, '-m', 'xfeldata.lsxfel', str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '# of trains:    100' in r.stdout
    np.testing.assert_equal(r.stderr, '')


@pytest.mark.parametrize('module', ['xfeldata.voview', 'xfeldata.copy', 'xfeldata.validation',
                                    'xfeldata.locality', 'xfeldata.cli.lsxfel',
                                    'xfeldata.cli.check_readable', 'xfeldata.cli.serve_files',
                                    'xfeldata.cli.serve_run'])
def test_python_dash_m_runs_the_tool(module):
    # `python -m <module> --help` prints the tool's usage (not silently nothing).
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-m', module, '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'usage:' in out.stdout

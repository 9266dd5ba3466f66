"""The documentation: every example in docs/*.md runs, and the Sphinx build is clean.

How examples are run (docs/docs-tooling.md says the same for writers of pages):

- Each page runs in its own namespace, block after block, like a notebook, in
  a fresh temporary folder (the current directory and ``tempfile``'s default
  folder), so a page can build a synthetic run once and use it below.
- A ```` ```python ```` block is executed. If the next block is a
  ```` ```text ```` block, it is what the python block prints, exactly.
- A ```` ```console ```` block holds ``$ xfeldata ...`` commands (and their
  output, which is not compared: it holds temporary paths). Each command is
  run in-process through :func:`xfeldata.cli.main` and must exit with 0.
- A block preceded by a MyST comment line ``% docs-test: skip <reason>`` is
  not run. Only pages that say at the top that their examples are to be
  completed may skip python blocks (features still being written); any page
  may skip an install command, and a python block of EXtra-data code
  (``% docs-test: skip EXtra-data code ...``), which must equal, with
  ``extra_data`` replaced by ``xfeldata``, a python block of the same page
  that does run (the migration guide's "before" and "after").
- docs/pipelines.md is run by tests/test_recipes.py (same rules), not here.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
RUN_ELSEWHERE = {'pipelines.md': 'tests/test_recipes.py::test_pipelines_doc_examples_run'}
PENDING_NOTE = 'To be completed with examples'
EXTRA_DATA_CODE = 'EXtra-data code'
SKIP_RE = re.compile(r'^%\s*docs-test:\s*skip\b\s*(.*)$')


def markdown_blocks(text: str) -> list:
    """Fenced blocks of a Markdown page: (lang, body, skip reason or None, line number).

    Fences are matched by their exact backtick run, so blocks nested in a
    longer fence, MyST directives (```` ```{toctree} ````) and prose between
    blocks are never mistaken for code.
    """
    blocks = []
    lines = text.splitlines(keepends=True)
    i = 0
    prev = ''
    while i < len(lines):
        m = re.match(r'^(`{3,})([^`\n]*)\n?$', lines[i])
        if not m:
            if lines[i].strip():
                prev = lines[i].strip()
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).strip(), i + 1
        j = start
        while j < len(lines) and lines[j].rstrip('\n') != fence:
            j += 1
        if j == len(lines):
            raise AssertionError(f'unclosed code fence at line {i + 1}')
        skip = SKIP_RE.match(prev)
        blocks.append((lang, ''.join(lines[start:j]), skip.group(1) if skip else None, i + 1))
        prev = ''
        i = j + 1
    return blocks


def pages():
    return sorted(p.name for p in DOCS.glob('*.md'))


def test_block_parser():
    text = ("intro\n```python\nx = 1\n```\n% docs-test: skip needs a beamline\n"
            "```python\nboom()\n```\n````md\n```python\nnested\n```\n````\n"
            "```{toctree}\npage\n```\n```text\nout\n```\n")
    got = [(lang, body, skip) for lang, body, skip, _ in markdown_blocks(text)]
    assert got == [('python', 'x = 1\n', None), ('python', 'boom()\n', 'needs a beamline'),
                   ('md', '```python\nnested\n```\n', None), ('{toctree}', 'page\n', None),
                   ('text', 'out\n', None)]
    with pytest.raises(AssertionError, match='unclosed'):
        markdown_blocks('```python\nx = 1\n')


@contextlib.contextmanager
def _page_sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    env = dict(os.environ)
    with warnings.catch_warnings():
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(env)


def _run_console(body: str, where: str):
    from xfeldata.cli import main
    commands = [ln[2:] for ln in body.splitlines() if ln.startswith('$ ')]
    assert commands, f'{where}: a console block without "$ " commands'
    for cmd in commands:
        argv = shlex.split(cmd)
        assert argv[0] == 'xfeldata', (
            f'{where}: only `xfeldata ...` commands run in the docs tests; mark other '
            f'commands with "% docs-test: skip <reason>": {cmd!r}')
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                rc = main(argv[1:])
            except SystemExit as e:   # argparse's --help / --version
                rc = e.code
        assert rc in (0, None), f'{where}: `{cmd}` exited with {rc}:\n{out.getvalue()}'


def run_page(name: str):
    """Run the examples of one page; returns the number of blocks run."""
    text = (DOCS / name).read_text()
    blocks = markdown_blocks(text)
    pending = PENDING_NOTE in text[:2000]
    namespace = {'__name__': f'__docs_{Path(name).stem}__'}
    ran = 0
    for k, (lang, body, skip, line) in enumerate(blocks):
        where = f'docs/{name} line {line}'
        if skip is not None:
            assert skip, f'{where}: give a reason after "docs-test: skip"'
            assert pending or lang in ('console', 'shell') or skip.startswith(EXTRA_DATA_CODE), (
                f'{where}: only pages marked "{PENDING_NOTE}" may skip python examples')
            continue
        if lang == 'python':
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, where, 'exec'), namespace)
            ran += 1
            if k + 1 < len(blocks) and blocks[k + 1][0] == 'text':
                assert out.getvalue() == blocks[k + 1][1], f'{where}: printed output differs'
        elif lang == 'console':
            _run_console(body, where)
            ran += 1
        else:
            assert lang in ('text', 'shell', '') or lang.startswith('{'), (
                f'{where}: unknown block language {lang!r} (python, console, text, shell)')
    return ran


@pytest.mark.parametrize('name', [p for p in pages() if p not in RUN_ELSEWHERE])
def test_doc_examples_run(name, tmp_path, monkeypatch, isolated_cache):
    with _page_sandbox(tmp_path, monkeypatch):
        ran = run_page(name)
    text = (DOCS / name).read_text()
    n_python = sum(1 for b in markdown_blocks(text) if b[0] == 'python')
    if n_python:
        assert ran > 0


def test_extra_data_code_equals_a_block_that_runs():
    pairs = 0
    for name in pages():
        blocks = markdown_blocks((DOCS / name).read_text())
        ran = {body for lang, body, skip, _ in blocks if lang == 'python' and skip is None}
        for lang, body, skip, line in blocks:
            if lang == 'python' and skip and skip.startswith(EXTRA_DATA_CODE):
                assert 'extra_data' in body
                assert body.replace('extra_data', 'xfeldata') in ran, (
                    f'docs/{name} line {line}: the EXtra-data script has no twin that runs')
                pairs += 1
    assert pairs >= 2   # the import line and the analysis script of docs/migration.md


def test_pages_run_elsewhere_are_run():
    src = (ROOT / 'tests' / 'test_recipes.py').read_text()
    for name, test in RUN_ELSEWHERE.items():
        assert (DOCS / name).exists()
        assert test.split('::')[1] in src and name in src


def test_every_page_is_in_the_toctree():
    index = (DOCS / 'index.md').read_text()
    toc = [b[1] for b in markdown_blocks(index) if b[0] == '{toctree}']
    entries = {ln.strip() for body in toc for ln in body.splitlines()
               if ln.strip() and not ln.startswith(':')}
    for name in pages():
        if name != 'index.md':
            assert Path(name).stem in entries, f'docs/{name} is not in the toctree of index.md'


def test_a_failing_example_fails(tmp_path, monkeypatch):
    # The runner must not swallow errors or wrong output.
    docs = tmp_path / 'docs'
    docs.mkdir()
    (docs / 'bad.md').write_text("```python\nprint('a')\n```\n```text\nb\n```\n")
    (docs / 'raise.md').write_text("```python\nraise ValueError('x')\n```\n")
    (docs / 'skip.md').write_text("% docs-test: skip later\n```python\nraise ValueError\n```\n")
    (docs / 'cli.md').write_text("```console\n$ xfeldata no-such-command\n```\n")
    monkeypatch.setattr(sys.modules[__name__], 'DOCS', docs)
    with pytest.raises(AssertionError, match='printed output differs'):
        run_page('bad.md')
    with pytest.raises(ValueError):
        run_page('raise.md')
    with pytest.raises(AssertionError, match='may skip'):
        run_page('skip.md')
    with pytest.raises((AssertionError, SystemExit)):
        run_page('cli.md')


def _have_sphinx() -> bool:
    try:
        import myst_parser  # noqa: F401
        import numpydoc  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_sphinx(), reason='the docs extra (sphinx, numpydoc, myst-parser) '
                    'is not installed; .ci/run builds the docs in a separate step')
def test_sphinx_build_is_clean(tmp_path):
    # -W: warnings are errors; -n: broken cross-references warn; no network is used
    # (conf.py has no intersphinx).
    cmd = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-n', '-q', '-b', 'html',
           '-d', str(tmp_path / 'doctrees'), str(DOCS), str(tmp_path / 'html')]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-5000:]
    assert (tmp_path / 'html' / 'index.html').exists()
    assert (tmp_path / 'html' / 'migration.html').exists()
    assert (tmp_path / 'html' / 'api' / 'xfeldata.reader.html').exists()


def test_conf_helpers():
    import doctest
    import importlib.util
    spec = importlib.util.spec_from_file_location('xfeldata_docs', DOCS / '_ext' / 'xfeldata_docs.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert doctest.testmod(mod).failed == 0
    assert mod.github_slug('7. Quirks deliberately reproduced') == '7-quirks-deliberately-reproduced'
    conf = (DOCS / 'conf.py').read_text()
    assert 'sphinx.ext.intersphinx' not in conf   # no network during the build
    assert 'nitpicky = True' in conf
    # CI builds the docs with warnings as errors and broken references reported.
    ci = [ln for ln in (ROOT / '.ci' / 'run').read_text().splitlines()
          if '-m sphinx' in ln and not ln.lstrip().startswith('#')]
    assert len(ci) == 1 and {'-W', '-n'} <= set(ci[0].split())

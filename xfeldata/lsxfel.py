"""EXtra-data's ``lsxfel`` module path: forwards to :mod:`xfeldata.cli.lsxfel`.

``python -m xfeldata.lsxfel PATH`` works like ``xfeldata ls PATH``.
"""
from .cli.lsxfel import main

__all__ = ['main']

if __name__ == '__main__':
    raise SystemExit(main())

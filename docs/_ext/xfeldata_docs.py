"""Helpers for the Sphinx build of the xfeldata docs (imported by docs/conf.py)."""
import re


def github_slug(title: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to ``-``.

    >>> github_slug('Where the code differs from DESIGN.md')
    'where-the-code-differs-from-designmd'
    """
    return re.sub(r'[^\w\- ]', '', title.strip().lower()).replace(' ', '-')

"""Parsed files are kept by name and text (dsl/parser.py): a design re-checked for another
parameter point parses nothing again; a changed text, another name or a syntax error is never
served from the cache."""
from __future__ import annotations

import pytest

from archc.dsl import parser
from archc.dsl.diagnostics import ArchSyntaxError
from archc.dsl.source import Source

TEXT = "tile t { clock 1 GHz }\n"


def test_the_same_name_and_text_parse_once():
    a = parser.parse(Source("cache_a.arch", TEXT))
    assert parser.parse(Source("cache_a.arch", TEXT)) is a
    assert parser.parse(Source("cache_b.arch", TEXT)) is not a  # spans name their file
    assert parser.parse(Source("cache_a.arch", TEXT + "\n")) is not a


def test_a_syntax_error_is_raised_every_time():
    for _ in range(2):
        with pytest.raises(ArchSyntaxError):
            parser.parse(Source("cache_bad.arch", "tile t {"))
    assert ("cache_bad.arch", "tile t {") not in parser._PARSED


def test_the_cache_is_bounded():
    for i in range(parser.PARSED_FILES + 5):
        parser.parse(Source(f"cache_{i}.arch", TEXT))
    assert len(parser._PARSED) == parser.PARSED_FILES

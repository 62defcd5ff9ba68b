"""`--help` that teaches: defaults shown, an example per command, presets printable."""

from __future__ import annotations

import argparse
import re

import pytest

from sciml_recipes import cli


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


PARSERS = list(_parsers(cli._build_parser()))


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_every_option_with_a_default_shows_it_and_every_command_has_an_example(parser):
    text = parser.format_help()
    assert re.search(r"example:\s+sciml ", text), f"{parser.prog} --help has no example"
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.default in (None, argparse.SUPPRESS):
            continue
        if action.default is False:  # a flag: off unless given
            continue
        # the option's lines as printed (argparse prints no help text for an option whose
        # help is None, so the text the formatter would give is not enough)
        shown = formatter._format_action(action)
        assert "default" in shown, f"{parser.prog} {action.option_strings[0]}: no default shown"


def test_every_example_names_a_real_command():
    progs = {p.prog for p in PARSERS}
    for prog in cli.EXAMPLES:
        assert prog in progs, prog


def test_preset_show_prints_the_settings_and_writes_nothing(capsys, tmp_path):
    assert cli.main(["generate", "ns2d", "--preset", "fno", "--show"]) == 0
    out = capsys.readouterr().out
    assert "t_start" in out and "30.0" in out and "viscosity" in out


def test_generate_without_samples_or_out_says_what_is_missing(capsys):
    assert cli.main(["generate", "ns2d", "--preset", "fno"]) == 2
    assert "--samples and --out required" in capsys.readouterr().err

from rscovlm.cli import build_parser, main


def test_help_lists_command_groups(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "rscovlm" in out


def test_parser_builds():
    assert build_parser().prog == "rscovlm"


def _walk(parser):
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


def test_every_command_renders_its_help():
    parsers = list(_walk(build_parser()))
    assert len(parsers) > 15
    for parser in parsers:
        assert parser.format_help()  # argparse expands %-formats here: a stray '%' in a help text raises

from rscovlm.cli import build_parser, main


def test_help_lists_command_groups(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "rscovlm" in out


def test_parser_builds():
    assert build_parser().prog == "rscovlm"

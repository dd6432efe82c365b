"""List options typed the way users type them: space separated, comma separated, or repeated."""

from __future__ import annotations

from typer.testing import CliRunner

from robusteval.cli import app
from robusteval.cli.common import split_names, spread_list_options
from tests.helpers import val_rows as _rows
from tests.helpers import val_subset as _subset

LIST_OPTS = {"--models", "-m", "--severity", "-s"}


def test_words_after_a_list_option_become_more_values():
    args = ["--models", "a", "b", "--run", "x", "-m", "c", "--severity", "1", "2", "--compile"]
    assert spread_list_options(args, LIST_OPTS) == [
        "--models", "a", "--models", "b", "--run", "x", "-m", "c", "--severity", "1", "--severity", "2",
        "--compile",
    ]  # fmt: skip


def test_inline_values_flags_and_double_dash():
    assert spread_list_options(["--models=a", "b"], LIST_OPTS) == ["--models=a", "--models", "b"]
    # a word after a plain option's value or after a flag is left alone (Click reports it)
    assert spread_list_options(["--run", "x", "y"], LIST_OPTS) == ["--run", "x", "y"]
    assert spread_list_options(["--compile", "y"], LIST_OPTS) == ["--compile", "y"]
    assert spread_list_options(["-m", "a", "--", "b"], LIST_OPTS) == ["-m", "a", "--", "b"]


def test_split_names_takes_commas_and_spaces():
    assert split_names(["a,b", "c", " d , e "]) == ["a", "b", "c", "d", "e"]
    assert split_names(None) == []


def test_score_reads_every_model_typed_space_separated(tmp_path):
    """The second word is read as a model: the run stops at it with the registry's one-line error."""
    res = CliRunner().invoke(
        app, ["score", "--models", "mobilenet_v2", "not_a_model", "--run", "r", "--sets", str(tmp_path)]
    )
    assert res.exit_code == 2
    assert "unknown model 'not_a_model'" in res.output and "robusteval list models" in res.output
    assert "unexpected extra argument" not in res.output


def test_corrupt_takes_space_and_comma_separated_sets_and_levels(val1300, tmp_path):
    data = _subset(val1300, tmp_path / "data", _rows(val1300)[:2])
    out = tmp_path / "sets"
    args = ["corrupt", "--transform", "emboss", "invert,fliplr", "--severity", "1", "4"]
    res = CliRunner().invoke(app, [*args, "--data", str(data), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    written = {p.relative_to(out).parts[:2] for p in out.rglob("*.png")}
    # emboss at both levels; the single-level sets at their one level
    assert written == {("emboss", "1"), ("emboss", "4"), ("invert", "1"), ("fliplr", "1")}
    assert len(list(out.rglob("*.png"))) == 8


def test_weights_path_alone_belongs_to_the_one_model(tmp_path):
    """With one model a bare --weights PATH is that model's file (checked before any set is read);
    with two, the option needs MODEL=PATH and the error shows one."""
    missing = str(tmp_path / "missing.pth")
    one = ["score", "-m", "mobilenet_v2", "--weights", missing, "--run", "r", "--sets", str(tmp_path)]
    res = CliRunner().invoke(app, one)
    assert res.exit_code == 2 and f"--weights {missing}: no such file" in res.output
    two = ["score", "-m", "mobilenet_v2", "efficientnet_lite0", "--weights", missing, "--run", "r"]
    res = CliRunner().invoke(app, [*two, "--sets", str(tmp_path)])
    assert res.exit_code == 2 and "expected NAME=VALUE" in res.output
    assert "e.g. --weights vmamba_b=" in res.output

"""config.py: flags derived from the dataclasses, finite-number types, task options, to_argv round trip."""
import argparse

import pytest

import config
from common import UserError


def parser():
    p = argparse.ArgumentParser()
    for cls in (config.TaskConfig, config.ContextConfig, config.TrainConfig):
        config.add_args(p, cls)
    return p


@pytest.mark.parametrize("argv", [["--alpha", "nan"], ["--alpha", "inf"], ["--alpha", "1.5"], ["--lr", "0"],
                                  ["--lr", "-1"], ["--lora-dropout", "1"], ["--max-steps", "1e12"],
                                  ["--seed", "-1"], ["--seed", str(2**40)], ["--k", "0"], ["--regime", "bogus"],
                                  ["--weight-decay", "-1"], ["--lora-alpha", "nan"], ["--epochs", "x"]])
def test_bad_numbers_and_choices_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and argv[0] in err


def test_defaults_and_help_come_from_the_dataclasses():
    args = parser().parse_args([])
    assert config.from_args(config.ContextConfig, args) == config.ContextConfig()
    assert config.from_args(config.TrainConfig, args) == config.TrainConfig()
    help_text = parser().format_help()
    assert "share of Random-Contexts" in help_text and "--repeat" in help_text and "--full" in help_text


def test_to_argv_round_trip():
    cfg = config.ContextConfig(regime="random+similar", alpha=0.4, k=2, min_avg_sim=0.2)
    argv = config.to_argv(cfg)
    assert argv == ["--regime", "random+similar", "--k", "2", "--alpha", "0.4", "--min-avg-sim", "0.2"]
    assert config.from_args(config.ContextConfig, parser().parse_args(argv)) == cfg
    assert config.to_argv(config.TrainConfig(full=True)) == ["--full"]


def test_task_options_reject_flags_of_other_tasks():
    assert config.task_options(config.TaskConfig(task="mt", data="d")) == {
        "data": "d", "src": "en", "tgt": "de", "max_pool": None, "metric": "chrf"}
    with pytest.raises(UserError, match="--lang does not apply to task alignment"):
        config.task_options(config.TaskConfig(lang="de"))
    with pytest.raises(UserError, match="--n-train does not apply to task mt"):
        config.task_options(config.TaskConfig(task="mt", n_train=5))
    assert config.task_config_dict(config.TaskConfig(task="semparse", data="x")) == {
        "task": "semparse", "data": "x", "lang": "en", "max_pool": None, "test_size": None}

"""config.py: flags derived from the dataclasses, finite-number types, task options, to_argv round trip."""
import argparse
import re

import pytest

from contrastive_context import config
from contrastive_context.common import UserError


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


def _default_statements(help_text):
    return len(re.findall(r"\(default\b|\bdefault:|\bdefault \d", help_text))


def test_help_states_each_default_once(capsys):
    """A help text that already states its default ("(default: 2; 20 for --model
    scratch)") gets no second "(default: none)"; every other flag gets its default appended."""
    for action in parser()._actions:
        if action.option_strings and action.dest != "help":
            assert _default_statements(action.help) == 1, (action.option_strings, action.help)
    import train
    with pytest.raises(SystemExit) as e:
        train.get_args(["-h"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 2; 20 for --model scratch)" in text and "(default: 2; 8 for --model scratch)" in text
    assert "for --model scratch) (default" not in text and "for --full) (default" not in text
    assert "the paper's method) (default" not in text


def test_printed_config_shows_only_what_applies():
    """An alignment run's printed config has no MT / MTOP / SQL flags, a --full run no
    LoRA flags, a regime no knobs of other regimes; what applies stays."""
    p = parser()
    shown = config.applicable(p.parse_args(["--regime", "random", "--full"]))
    assert {"task", "n_train", "task_seed", "regime", "k", "zero_frac", "full", "lr", "seed"} <= set(shown)
    assert not {"metric", "src", "tgt", "lang", "data", "sql_schema", "test_size", "alpha", "beta", "rho",
                "min_avg_sim", "lora_r", "lora_alpha", "lora_dropout", "lora_targets"} & set(shown)
    shown = config.applicable(p.parse_args(["--task", "mt", "--data", "d", "--regime", "contrastive"]))
    assert {"metric", "src", "tgt", "data", "alpha", "beta", "rho", "lora_r"} <= set(shown)
    assert not {"n_train", "task_seed", "align_m", "lang", "min_avg_sim"} & set(shown)


# ----------------------------------------------------------------------------- argparse value types
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "abc", "", "1e400"])
def test_finite_float_rejects_non_finite_and_garbage(text):
    with pytest.raises(argparse.ArgumentTypeError):
        config.finite_float()(text)


def test_finite_float_bounds():
    f = config.finite_float(0, 1, hi_open=True)
    assert f("0") == 0.0 and f("0.5") == 0.5
    for bad in ("1", "1.5", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\)"):
            f(bad)
    assert config.finite_float(lo=0, lo_open=True)("1e-9") == 1e-9
    with pytest.raises(argparse.ArgumentTypeError):
        config.finite_float(lo=0, lo_open=True)("0")


@pytest.mark.parametrize("text", ["1e12", "2.5", "nan", "x", "", "-1"])
def test_int_range_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        config.int_range(0, 10**6)(text)


def test_argparse_error_is_one_line_exit_2(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--lr", type=config.finite_float(lo=0, lo_open=True))
    p.add_argument("--seed", type=config.SEED)
    for argv in (["--lr", "nan"], ["--seed", str(2**40)], ["--lr", "-1"]):
        with pytest.raises(SystemExit) as e:
            p.parse_args(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert sum("error:" in l for l in err.splitlines()) == 1
    assert config.int_range(0, 3)("3") == 3 and config.SEED("4294967295") == 2**32 - 1


def test_threads_type_and_set_threads_refuse_negatives():
    with pytest.raises(argparse.ArgumentTypeError):
        config.THREADS("-1")
    with pytest.raises(UserError):
        config.set_threads(-1)


def test_shared_eval_flags_narrow_but_never_widen():
    """A flag of config.EvalConfig keeps its type wherever it is added: a script may narrow
    its range (reproduce.py's --k 1..64), never widen it nor give it another type."""
    k = config.add_eval_arg(argparse.ArgumentParser(), "k", hi=64)
    assert k.type("64") == 64 and k.dest == "k" and k.default == 4
    with pytest.raises(argparse.ArgumentTypeError):
        k.type("65")
    with pytest.raises(ValueError, match="widens"):
        config.add_eval_arg(argparse.ArgumentParser(), "k", hi=1000)
    with pytest.raises(TypeError):
        config.add_eval_arg(argparse.ArgumentParser(), "k", type=int)
    assert config.add_eval_arg(argparse.ArgumentParser(), "seed").type is config.SEED
    assert config.add_threads_arg(argparse.ArgumentParser()).type is config.THREADS


def test_explicit_dests_sees_every_way_of_typing_a_flag():
    """train.py --config: flags typed on the command line win: `--flag value`, `--flag=value`,
    an abbreviation (where the parser allows them) and a value equal to the default all count as given."""
    p = parser()
    argv = ["--lr=0.01", "--max-st", "3", "--seed", "0", "--full", "--report-to", "none"]
    assert config.explicit_dests(p, argv) == {"lr", "max_steps", "seed", "full", "report_to"}
    assert config.explicit_dests(p, []) == set()
    assert p.parse_args([]).lr is None  # the defaults are back after the second parse
    strict = argparse.ArgumentParser(allow_abbrev=False)
    strict.add_argument("--n-train", type=int, default=5)
    strict.add_argument("--out", required=True)
    assert config.explicit_dests(strict, ["--out", "x", "--n-train=5"]) == {"out", "n_train"}


def test_not_of_the_run_is_one_table_that_the_four_places_read():
    """config.NOT_OF_THE_RUN is the one list of the flags that are not part of a run; train.py --resume, train.py
    --config (runs.INVOCATION_FLAGS), reproduce.py's stage records and a --contexts run's config.json read it."""
    import reproduce
    import train
    from contrastive_context import runs
    dests = {a.dest for a in train.build_parser()._actions}
    assert set(config.NOT_OF_THE_RUN) - dests == {"cpu_threads"}  # the old name, in older runs' config.json
    assert train.NON_SEMANTIC == set(config.NOT_OF_THE_RUN) - set(config.SAMPLING_FLAGS)
    assert {"alpha", "regime", "k"} <= set(config.SAMPLING_FLAGS) and "paraphrases" not in config.SAMPLING_FLAGS
    assert set(runs.INVOCATION_FLAGS) == {"out", "resume", "overwrite", "stop_after", "config"}
    assert not {"seed", "lr", "model", "task", "max_steps"} & train.NON_SEMANTIC  # these change the weights
    cmd = ["train.py", "--threads", "2", "--seed", "1", "--resume", "--eval-limit", "0", "--out", "r"]
    assert reproduce.stage_key(cmd) == ["train.py", "--seed", "1", "--eval-limit", "0", "--out", "r"]
    with pytest.raises(ValueError):
        config.not_of_the_run("nonsense")

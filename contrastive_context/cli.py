"""The command-line parser the synthetic-track scripts share (sweep.py, theory_sim.py)."""
import argparse

from .common import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (a bad flag value such as `--dim 1e8`) are ONE `error:` line, exit 2:
    a UserError, reported by common.run_main like every other refused input."""

    def error(self, message):
        raise UserError(message)

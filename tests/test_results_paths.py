"""Committed results hold repository-relative paths only: no file under results/ names a
folder of the machine that produced it."""
import os
import re

from conftest import REPO

ABSOLUTE = re.compile(r"(?<![\w.])/(work|home|root|tmp|Users|mnt|scratch)/")


def test_no_committed_result_file_holds_an_absolute_path():
    bad = []
    for dp, _, files in os.walk(os.path.join(REPO, "results")):
        for f in files:
            if f.endswith((".png", ".safetensors")):
                continue
            p = os.path.join(dp, f)
            with open(p, encoding="utf-8", errors="ignore") as fh:
                for n, line in enumerate(fh, 1):
                    if ABSOLUTE.search(line):
                        bad.append(f"{os.path.relpath(p, REPO)}:{n}")
                        break
    assert not bad, f"{len(bad)} result files hold absolute paths, e.g. {bad[:5]}"

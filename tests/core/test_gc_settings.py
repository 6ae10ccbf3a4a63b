"""Servers freeze what they hold once up and collect young objects less often; cyclic
garbage made afterwards is still collected."""

from __future__ import annotations

import subprocess
import sys

from flexlog.core import gc_settings

# Runs in its own interpreter: the settings are process-wide.
_AFTER_TUNING = """
import gc, weakref
from flexlog.core import gc_settings
gc_settings.tune_gc()
print(gc.get_threshold(), gc.get_freeze_count() > 1000)

class Node:
    pass

collected = 0
def gone(_ref):
    global collected
    collected += 1
refs = []
for _ in range(200_000):
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    refs.append(weakref.ref(a, gone))
    del a, b
print(collected)
"""


def test_settings_apply_and_cycles_are_still_collected() -> None:
    out = subprocess.run([sys.executable, "-c", _AFTER_TUNING], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split("\n")
    assert out[0] == (f"({gc_settings.YOUNG_THRESHOLD}, {gc_settings.MIDDLE_EVERY}, "
                      f"{gc_settings.OLD_EVERY}) True")
    assert int(out[1]) > 150_000  # without an explicit gc.collect()

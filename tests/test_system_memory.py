"""sonoseg.system.memory: the allocator thresholds are applied once, and can be turned off."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = "from sonoseg.system import tune_allocator; print(tune_allocator(), tune_allocator())"


def _run(env_value=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "SONOSEG_MALLOC_TUNE"}
    if env_value is not None:
        env["SONOSEG_MALLOC_TUNE"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_tune_allocator_applies_on_glibc_and_is_idempotent():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert _run() == ["True", "True"]


def test_tune_allocator_can_be_switched_off():
    assert _run("0") == ["False", "False"]

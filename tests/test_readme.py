"""The README's code runs as written: every ```python block marked ``<!-- runs as written: ... -->``
(in order, in a scratch folder; the API-client block needs a server and is not marked), then its
`sonoseg measure` example, whose HC/BPD/OFD must match the ellipse the example draws."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import numpy as np
import pytest

from conftest import REPO


MARK = "<!-- runs as written: tests/test_readme.py -->"


def _blocks(lang: str, marked: bool = False) -> list[str]:
    prefix = re.escape(MARK) + r"\n" if marked else ""
    return re.findall(rf"{prefix}```{lang}\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_python_blocks_and_biometry_example_run(tmp_path, monkeypatch, capsys):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "fetal_head_biometry.yaml", tmp_path / "configs")
    blocks = _blocks("python", marked=True)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert "frame 0" in printed and "(" in printed  # the library snippet measured a shipped sample
    cmds = [ln.strip() for b in _blocks("bash") for ln in b.splitlines() if ln.strip().startswith("sonoseg measure")]
    assert cmds, "README lost its sonoseg measure example"
    res = CliRunner().invoke(app, shlex.split(cmds[0])[1:] + ["--no-progress"])
    assert res.exit_code == 0, res.output
    (meas,) = (tmp_path / "biometry").glob("*.measurements.json")
    bio = json.loads(meas.read_text())["frames"][0]["biometry"]
    a, b = 270 * 0.15, 200 * 0.15  # the semi-axes the README's block draws
    t = np.linspace(0, 2 * np.pi, 200001)
    hc = float(np.trapezoid(np.hypot(a * np.sin(t), b * np.cos(t)), t))
    assert bio["unit"] == "mm"
    assert bio["hc"] == pytest.approx(hc, rel=0.005)
    assert bio["bpd"] == pytest.approx(2 * b, rel=0.01) and bio["ofd"] == pytest.approx(2 * a, rel=0.01)

"""Fast CI subset of the fuzz corpus (tests/fuzz_corpus.py; the whole corpus runs in bench/fuzz.py).

One `predict` batch over broken variants of real vendor files: nothing escapes as an exception, every
failure has a one-line reason in words, and no variant that is inconsistent by construction comes back
as a silent OK.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fuzz_corpus import build_corpus, seed_path, verdict

RAW_NAME = re.compile(r"(^|[\s(:])(?:[A-Z][A-Za-z]+(?:Error|Exception)|Traceback)\b")


@pytest.fixture
def tiny(tiny_model) -> Path:
    return tiny_model


def test_corpus_is_seeded_and_large_enough():
    if seed_path("OBXXXX1A.dcm") is None:
        pytest.skip("pydicom-data not installed")
    a = build_corpus(seed=3, seeds=["OBXXXX1A.dcm"], flips=3, truncations=2)
    b = build_corpus(seed=3, seeds=["OBXXXX1A.dcm"], flips=3, truncations=2)
    assert [(v.name, v.data) for v in a] == [(v.name, v.data) for v in b]
    assert len(build_corpus(seed=0)) >= 300


def test_fuzz_subset_through_predict(tiny, tmp_path):
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    if seed_path("OBXXXX1A.dcm") is None or seed_path("US1_UNCR.dcm") is None:
        pytest.skip("pydicom-data not installed")
    corpus = build_corpus(seed=0, seeds=["OBXXXX1A.dcm", "US1_UNCR.dcm"], flips=2, truncations=2)
    subset = corpus[::3] + [v for v in corpus if v.suffix != ".dcm" or "planar" in v.name or "spp_1" in v.name]
    folder = tmp_path / "in"
    folder.mkdir()
    by_path = {}
    for v in subset:
        by_path[str(v.write(folder))] = v
    payload = predict_inputs([folder], tmp_path / "out", PredictOptions(model=tiny, threads=1, write_seg=False),
                             log=lambda m: None)
    seen = {r["input"]: r for r in payload["results"]}
    assert set(by_path) <= set(seen), "every variant must be listed"
    problems = []
    for path, v in by_path.items():
        r = seen[path]
        if verdict(v, r) == "silent_ok":
            problems.append(f"silent OK: {v.name}")
        if r["error"] and (RAW_NAME.search(r["error"]) or "\n" in r["error"]):
            problems.append(f"raw reason: {v.name}: {r['error']}")
    assert not problems, problems
    assert not list((tmp_path / "out").glob(".sonoseg-tmp-*"))

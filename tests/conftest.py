"""Shared fixtures: real DICOM test files (pydicom + pydicom-data, found on disk, never downloaded)
and the BUSI dataset (skips with a clear reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _dicom_dirs() -> list[Path]:
    dirs = []
    import pydicom

    dirs.append(Path(pydicom.__file__).parent / "data" / "test_files")
    try:
        import data_store  # installed by the pydicom-data package

        dirs.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return [d for d in dirs if d.is_dir()]


def dicom_testfile(name: str) -> Path:
    """Path of a named file shipped by pydicom or pydicom-data; skip the test if unavailable."""
    for d in _dicom_dirs():
        p = d / name
        if p.is_file():
            return p
    pytest.skip(f"DICOM test file {name} not installed (needs pydicom-data)")


@pytest.fixture
def dicom_file():
    return dicom_testfile


def busi_root() -> Path | None:
    env = os.environ.get("SONOSEG_DATA")
    candidates = [Path(env) / "busi"] if env else []
    candidates += [REPO.parent / "shared" / "data" / "busi", REPO / ".." / "shared" / "data" / "busi"]
    for c in candidates:
        if (c / "images").is_dir() and (c / "masks").is_dir():
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def busi() -> Path:
    root = busi_root()
    if root is None:
        pytest.skip("BUSI dataset not found: set SONOSEG_DATA or place it at ../shared/data/busi")
    return root


@pytest.fixture(scope="session", autouse=True)
def sonoseg_cache_dir(tmp_path_factory):
    """A fresh sonoseg cache for the whole test session (the fast path's ONNX/int8 builds, image hashes,
    preprocessed arrays): nothing leaks into ~/.cache and no stale entry from an earlier run can hide a
    bug. The shipped model's int8 version is built once per session and shared by the tests."""
    d = tmp_path_factory.mktemp("sonoseg-cache")
    old = os.environ.get("SONOSEG_CACHE_DIR")
    os.environ["SONOSEG_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("SONOSEG_CACHE_DIR", None)
    else:
        os.environ["SONOSEG_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained 4-channel U-Net checkpoint on a 32x32 grid: for tests of ingest, outputs and
    failure handling, where accuracy does not matter and speed does."""
    import torch

    from sonoseg.config import load_config
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    cfg = load_config(None, ["model.name=unet", "model.params={base_channels: 4, depth: 2}", "preprocess.size=[32, 32]"])
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", config=cfg,
                           model_state=create_model_from_config(cfg.model).state_dict())


@pytest.fixture(autouse=True)
def _dciodvfy_every_seg(request):
    """After each test that used ``tmp_path``: every DICOM SEG written there must pass dciodvfy with 0
    errors (see tests/dciodvfy_check.py). CI installs dciodvfy (.ci/run); without it this is a no-op
    that says so once."""
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp is None:
        return
    import dciodvfy_check as dv

    segs = [p for p in sorted(Path(tmp).rglob("*.dcm")) if dv.is_seg(p)]
    if not segs:
        return
    if not dv.available():
        import warnings

        warnings.warn("dciodvfy not installed (apt-get install dicom3tools): SEG conformance not checked")
        return
    bad = {str(p.name): dv.seg_problems(p)[0] for p in segs}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"dciodvfy errors: {bad}"


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server on a loopback port for the whole session (store/serve tests);
    skipped with the reason when the Debian ``postgresql`` binaries are not installed."""
    from _pg import PgServer, pg_bindir

    if pg_bindir() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg not installed (pip install -e '.[serve]')")
    server = PgServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Database URL for one test: None = the embedded SQLite default, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture
def store(tmp_path, store_url):
    """An opened (migrated) results store on SQLite or PostgreSQL (see ``store_url``)."""
    from sonoseg.store import Store

    st = Store(tmp_path / "data", store_url)
    st.open()
    yield st
    st.dispose()

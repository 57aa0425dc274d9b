"""Uploads: streamed to the spool in chunks (never whole in memory), sniffed by content (never by the
client's file name) and checked to decode before any job exists. A refused upload leaves nothing."""

from __future__ import annotations

import gzip
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sonoseg.serve.guard import UploadRejected

CHUNK = 1 << 20
DEFAULT_JOB_MB = 512  # the worker's memory budget per job (Settings.job_memory_mb)


@dataclass
class Spooled:
    path: Path  # temporary file in the work folder, with the right suffix
    fmt: str  # dicom | image | nifti
    sha256: str
    size: int


def sniff(head: bytes) -> tuple[str, str] | None:
    """(format, suffix) from the first bytes; None if not a supported kind."""
    if head[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(head) if len(head) < 2048 else _gunzip_head(head)
        except (OSError, EOFError):
            inner = _gunzip_head(head)
        return ("nifti", ".nii.gz") if inner[344:348] in (b"n+1\x00", b"ni1\x00") else None
    if head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti", ".nii"
    if head[128:132] == b"DICM":
        return "dicom", ".dcm"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image", ".png"
    if head[:3] == b"\xff\xd8\xff":
        return "image", ".jpg"
    return None


def _gunzip_head(head: bytes) -> bytes:
    import zlib

    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
    except zlib.error:
        return b""


def spool(fileobj, work_dir: Path, max_bytes: int) -> Spooled:
    """Copy an uploaded file object to ``work_dir`` in chunks, hashing it on the way."""
    tmp = work_dir / f"{uuid.uuid4().hex}.part"
    h, size, head = hashlib.sha256(), 0, b""
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:  # owner-only
            while chunk := fileobj.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadRejected(413, f"larger than the {max_bytes // (1024 * 1024)} MiB limit")
                if len(head) < 4096:
                    head += chunk[: 4096 - len(head)]
                h.update(chunk)
                out.write(chunk)
        if size == 0:
            raise UploadRejected(400, "empty file")
        kind = sniff(head)
        if kind is None:
            raise UploadRejected(415, "not a DICOM (Part 10), PNG, JPEG or NIfTI file")
        final = tmp.with_suffix(kind[1])
        os.replace(tmp, final)
        return Spooled(final, kind[0], h.hexdigest(), size)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def validate(sp: Spooled, limits=None) -> dict:
    """Declared size within the budgets (413, from the header alone: serve/guard.py), then header and
    first frame must decode; returns frames/rows/columns. Raises UploadRejected."""
    from sonoseg.io import iter_frames, read_meta
    from sonoseg.serve.guard import Limits, check

    if sp.fmt == "dicom":  # first: a SEG, SR ... has no pixel budget to check, it is not an image at all
        from sonoseg.infer.sop_class import not_an_image

        kind = not_an_image(sp.path)
        if kind is not None:  # a SEG, SR, PR, KO ...: never segmented (the same rule as predict and listen)
            raise UploadRejected(422, f"not an image to segment: {kind} (only image storage SOP classes are)")
    check(sp.path, sp.fmt, limits or Limits.of(DEFAULT_JOB_MB))
    try:
        meta = read_meta(sp.path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault here
        raise UploadRejected(422, f"unreadable {sp.fmt}: {_reason(exc)}") from None
    if sp.fmt == "dicom" and meta.frames is not None and int(meta.frames) < 1:
        raise UploadRejected(422, "zero frames (NumberOfFrames = 0)")
    if not meta.rows or not meta.columns:
        raise UploadRejected(422, "no pixel data (zero rows or columns)")
    try:
        first = next(iter_frames(sp.path), None)
    except Exception as exc:  # noqa: BLE001
        raise UploadRejected(422, f"pixel data cannot be decoded: {_reason(exc)}") from None
    if first is None or first.size == 0:
        raise UploadRejected(422, "zero frames")
    return {"frames": max(int(meta.frames or 1), 1), "rows": int(meta.rows), "columns": int(meta.columns)}


def _reason(exc: Exception) -> str:
    """The reason without the server-side path (InputError prefixes it)."""
    r = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return r.splitlines()[0][:200]

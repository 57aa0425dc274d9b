"""What an input will cost, from its header alone, before anything is decoded.

The upload check and the worker both call :func:`check`: a file whose declared geometry exceeds
``predict``'s budget (:mod:`sonoseg.io.budget`) or whose estimated processing memory exceeds the
worker's job budget is refused with a one-line reason (413), never decoded. PNG/JPEG headers are
parsed without the image libraries (io/image_header.py), which may allocate the declared size
(OpenCV) or refuse to say it (Pillow's bomb error). A deflated DICOM dataset is inflated as a stream,
counting bytes, because pydicom inflates it whole to read even its header.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from sonoseg.errors import InputError, SonosegError, reason

MB = 1024 * 1024
# Estimated peak memory of one job. bench/job_memory.py measured the worker's run_job (predict, SEG,
# frame renders) growing by at most 19 bytes per pixel of a single image, ~2 bytes per pixel of
# every cine frame over ~90 MB (writers and libraries loaded on first use), 4 bytes per voxel of a
# NIfTI volume; the estimate stays 1.2-3.9x above every measurement (the fixed part dominates small
# inputs; bench/results/job_memory.json).
PER_FRAME_BYTES = 24  # per pixel of one frame (decode, model input, overlay, PNG renders)
PER_VOXEL_BYTES = 3  # per pixel of every frame of a cine or volume (masks, SEG frames, mask read back)
FIXED_BYTES = 96 * MB


class UploadRejected(SonosegError):
    """An upload the service refuses: ``status`` is the HTTP answer (4xx), the message one line."""

    def __init__(self, status: int, reason: str):
        self.status = status
        super().__init__(reason.splitlines()[0][:300] if reason else "upload refused")


@dataclass(frozen=True)
class Declared:
    rows: int
    columns: int
    frames: int = 1
    samples: int = 1
    sample_bytes: int = 1
    volume: bool = False  # NIfTI: read whole (in its own sample size), not frame by frame

    @property
    def frame_pixels(self) -> int:
        return self.rows * self.columns

    def job_bytes(self) -> int:
        """Estimated peak memory of processing this input (see the factors above)."""
        per_frame = self.frame_pixels * max(PER_FRAME_BYTES, self.samples * self.sample_bytes * 4)
        per_voxel = (PER_VOXEL_BYTES if self.frames > 1 else 0) + (self.sample_bytes if self.volume else 0)
        return FIXED_BYTES + per_frame + self.frame_pixels * self.frames * per_voxel


@dataclass(frozen=True)
class Limits:
    job_bytes: int  # the worker's memory budget for one job

    @classmethod
    def of(cls, job_memory_mb: float) -> "Limits":
        return cls(int(job_memory_mb * MB))


def check(path: Path, fmt: str, limits: Limits) -> Declared:
    """The declared geometry, if it fits both budgets; else UploadRejected (413 over a budget, 422 for
    a header that cannot be read)."""
    from sonoseg.io.budget import check_declared

    d = declared(path, fmt, limits)
    try:
        check_declared(path, d.rows, d.columns, d.frames, d.samples)
    except InputError as exc:
        raise UploadRejected(413, exc.reason) from None
    need = d.job_bytes()
    if need > limits.job_bytes:
        raise UploadRejected(413, f"declared size {d.frames} frame(s) of {d.rows} x {d.columns} x {d.samples} needs "
                                  f"about {need // MB} MB to process, over the worker's budget of "
                                  f"{limits.job_bytes // MB} MB (SONOSEG_JOB_MEMORY_MB)")
    return d


def declared(path: Path, fmt: str, limits: Limits) -> Declared:
    try:
        if fmt == "image":
            return _image(Path(path))
        if fmt == "dicom":
            return _dicom(Path(path), limits)
        if fmt == "nifti":
            return _nifti(Path(path))
    except UploadRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is the file's fault here
        raise UploadRejected(422, f"unreadable {fmt} header ({reason(exc)})") from None
    raise UploadRejected(415, f"unsupported format {fmt}")


def _positive(d: Declared, what: str) -> Declared:
    if d.rows <= 0 or d.columns <= 0 or d.frames <= 0:
        raise UploadRejected(422, f"{what} declares an empty image ({d.frames} x {d.rows} x {d.columns})")
    return d


def _image(p: Path) -> Declared:
    from sonoseg.io.image_header import read_image_header

    try:
        h = read_image_header(p)
    except ValueError as exc:
        raise UploadRejected(422, f"unreadable image header: {exc}") from None
    if h is None:
        raise UploadRejected(415, "not a PNG or JPEG image")
    return _positive(Declared(h.rows, h.columns, h.frames, h.samples, h.sample_bytes), "image")


def _dicom(p: Path, limits: Limits) -> Declared:
    import pydicom
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    meta = read_file_meta_info(p)
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        _check_inflated(p, limits.job_bytes // 3)
    ds = pydicom.dcmread(p, stop_before_pixels=True, force=True, defer_size=1 << 20,
                         specific_tags=["Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"])
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.get("BitsAllocated", 8) or 8)
        d = Declared(int(ds.Rows), int(ds.Columns), frames, int(ds.get("SamplesPerPixel", 1) or 1), max(bits // 8, 1))
    except (AttributeError, TypeError, ValueError):
        raise UploadRejected(422, "DICOM without usable Rows, Columns or NumberOfFrames") from None
    return _positive(d, "DICOM")


def _check_inflated(p: Path, cap: int) -> None:
    """Inflate a deflated dataset as a stream, keeping nothing, and refuse it past ``cap`` bytes."""
    from pydicom.filereader import read_preamble, _read_file_meta_info

    with open(p, "rb") as f:
        read_preamble(f, False)
        _read_file_meta_info(f)
        z, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := f.read(1 << 16):
            data = z.decompress(chunk, 1 << 20)
            while True:
                total += len(data)
                if total > cap:
                    raise UploadRejected(413, f"deflated DICOM inflates past {cap // MB} MB, over the worker's "
                                              "budget (SONOSEG_JOB_MEMORY_MB)")
                if not z.unconsumed_tail:
                    break
                data = z.decompress(z.unconsumed_tail, 1 << 20)


def _nifti(p: Path) -> Declared:
    import nibabel as nib

    hdr = nib.load(str(p)).header
    shape = [int(s) for s in hdr.get_data_shape()] + [1, 1]
    frames = 1
    for s in shape[2:]:
        frames *= s
    slope, _ = hdr.get_slope_inter()
    size = 8 if slope not in (None, 1.0) else int(hdr.get_data_dtype().itemsize)
    return _positive(Declared(shape[1], shape[0], frames, 1, size, volume=True), "NIfTI")

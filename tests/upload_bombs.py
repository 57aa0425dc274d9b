"""Pixel bombs: small files that declare (or inflate to) huge images, built at run time in bounded
memory (zlib streams of zeros, patched headers). Used by the service tests and ``bench/fuzz.py --service``.

Each builder returns bytes; none of them ever holds the decoded image in memory.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass

ROW_CHUNK = 1 << 20


@dataclass
class Bomb:
    name: str
    data: bytes
    suffix: str


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png(width: int, height: int, colour: int = 0, full: bool = True) -> bytes:
    """A PNG of zeros (colour type 0 grey, 2 RGB). ``full``: every row present (a real decompression
    bomb, ~1 KB per MB decoded); otherwise a one-row IDAT (a header that lies)."""
    samples = {0: 1, 2: 3}[colour]
    row = b"\x00" * (1 + width * samples)
    z = zlib.compressobj(9)
    parts = []
    for _ in range(height if full else 1):
        if out := z.compress(row):
            parts.append(out)
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def jpeg(width: int, height: int, real: tuple[int, int] = (8, 8)) -> bytes:
    """A small real JPEG whose SOF is patched to declare ``width`` x ``height`` (the scan data stays
    tiny: decoders allocate the declared size, then run out of data)."""
    import cv2
    import numpy as np

    data = bytearray(cv2.imencode(".jpg", np.zeros(real, np.uint8))[1].tobytes())
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker")


def _dicom_base(rows: int, cols: int, frames: int, samples: int = 1):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.SamplesPerPixel = rows, cols, frames, samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return ds


def dicom_rle_header(rows: int, cols: int, frames: int) -> bytes:
    """RLE Lossless DICOM that declares rows x cols x frames with one tiny fragment per frame."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    ds = _dicom_base(rows, cols, frames)
    ds.file_meta.TransferSyntaxUID = RLELossless
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    ds.PixelData = encapsulate([header + b"\x81\x00" for _ in range(min(frames, 4096))])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = frames
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_deflated(rows: int, cols: int, frames: int) -> bytes:
    """Deflated Explicit VR Little Endian: the whole dataset (zero pixels) deflated, so a file of a
    few hundred KB inflates to rows x cols x frames bytes when a reader parses its header."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = _dicom_base(rows, cols, frames)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n = rows * cols * frames
    elem = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, n + (n & 1))
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [z.compress(body.getvalue() + elem)]
    zeros = b"\x00" * ROW_CHUNK
    left = n + (n & 1)
    while left > 0:
        parts.append(z.compress(zeros[: min(left, ROW_CHUNK)]))
        left -= ROW_CHUNK
    parts.append(z.flush())
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta, enforce_standard=True)
    return out.getvalue() + b"".join(parts)


def nifti(shape: tuple[int, ...], full: bool = True) -> bytes:
    """A gzipped uint8 NIfTI-1 of zeros with ``shape``; ``full`` False keeps only the header and one
    byte of data (a header that lies)."""
    import nibabel as nib
    import numpy as np

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\x00" * 4
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as g:
        g.write(raw)
        left = int(np.prod(shape)) if full else 1
        zeros = b"\x00" * ROW_CHUNK
        while left > 0:
            g.write(zeros[: min(left, ROW_CHUNK)])
            left -= ROW_CHUNK
    return buf.getvalue()


def all_bombs() -> list[Bomb]:
    """The bench's set: every format, both kinds (a header that lies; a stream that inflates)."""
    return [
        Bomb("png-30000x30000-grey-full", png(30000, 30000), ".png"),
        Bomb("png-65535x65535-rgb-header", png(65535, 65535, colour=2, full=False), ".png"),
        Bomb("png-12000x12000-rgb-full", png(12000, 12000, colour=2), ".png"),
        Bomb("png-9000x9000-grey-full", png(9000, 9000), ".png"),
        Bomb("png-4000x4000-grey-full-within-budget", png(4000, 4000), ".png"),
        Bomb("jpeg-65000x65000-header", jpeg(65000, 65000), ".jpg"),
        Bomb("jpeg-20000x20000-header", jpeg(20000, 20000), ".jpg"),
        Bomb("jpeg-9000x9000-header", jpeg(9000, 9000), ".jpg"),
        Bomb("dicom-rle-65535x65535x1", dicom_rle_header(65535, 65535, 1), ".dcm"),
        Bomb("dicom-rle-4096x4096x2000", dicom_rle_header(4096, 4096, 2000), ".dcm"),
        Bomb("dicom-rle-1024x1024x900", dicom_rle_header(1024, 1024, 900), ".dcm"),
        Bomb("dicom-deflated-8000x8000x8", dicom_deflated(8000, 8000, 8), ".dcm"),
        Bomb("dicom-deflated-2000x2000x60", dicom_deflated(2000, 2000, 60), ".dcm"),
        Bomb("nifti-30000x30000x1-header", nifti((30000, 30000, 1), full=False), ".nii.gz"),
        Bomb("nifti-2048x2048x400-full", nifti((2048, 2048, 400)), ".nii.gz"),
        Bomb("nifti-1024x1024x500-full", nifti((1024, 1024, 500)), ".nii.gz"),
    ]

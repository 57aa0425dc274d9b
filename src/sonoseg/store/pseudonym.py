"""Pseudonyms and hashed UIDs: keyed HMACs, so the stored values cannot be reversed by hashing a
list of known UIDs without the server secret. Patient name/ID are never read."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path


def keyed_hash(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class InstanceIds:
    study_pseudonym: str
    study_hash: str | None
    series_hash: str
    instance_hash: str
    modality: str | None = None


def identify(path: Path, fmt: str, secret: bytes, input_sha256: str) -> InstanceIds:
    """DICOM: hashed Study/Series/SOP Instance UIDs (one pseudonym per study). Other formats: the
    upload's checksum stands in for all three (one study per file)."""
    if fmt == "dicom":
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality"])
        study = str(ds.get("StudyInstanceUID", "") or input_sha256)
        series = str(ds.get("SeriesInstanceUID", "") or input_sha256)
        sop = str(ds.get("SOPInstanceUID", "") or input_sha256)
        modality = str(ds.get("Modality", "") or "") or None
    else:
        study = series = sop = input_sha256
        modality = None
    sh = keyed_hash(secret, "study", study)
    return InstanceIds("ST-" + sh[:12].upper(), sh, keyed_hash(secret, "series", series),
                       keyed_hash(secret, "sop", sop), modality)

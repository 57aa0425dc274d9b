"""DICOM de-identification of what the store keeps and serves: the PS3.15 Basic Application
Confidentiality Profile (Annex E, Table E.1-1), with consistent UID replacement.

The profile's table (which attribute gets which action: D dummy, Z empty, X remove, U replace UID,
and the combined X/Z, X/D, Z/D, X/Z/D, X/Z/U*) comes from the ``dicom-anonymizer`` package, which
transcribes the standard's table per edition; the actions are applied here, at every nesting level
of every sequence, and private attributes are removed.

UIDs are replaced by a keyed hash of the original ("2.25." + 128 bits of HMAC-SHA256 with the
server's secret): the same original UID always gives the same replacement, so a stored SEG still
references its source as that source reads once de-identified the same way (Study, Series, SOP
Instance and Frame of Reference UIDs agree), across uploads and restarts, while nobody without the
secret can map a replacement back. Patient name and ID (action Z) are given one keyed pseudonym of
the patient ID rather than left empty, so one patient's studies stay together.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from pathlib import Path

EDITION = "dicomfields_2026c"  # the newest table the pinned dicom-anonymizer ships
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
METHOD = "PS3.15 E.1 Basic Application Confidentiality Profile"  # LO: at most 64 characters
_GROUPS = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
           "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
# dummy values (actions D, X/D, Z/D, X/Z/D) by VR: valid for the VR, and identifying nobody
_DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "PN": "ANONYMOUS",
          "CS": "REMOVED", "AE": "REMOVED", "IS": "0", "DS": "0", "UR": ""}
_NUMERIC = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}


@lru_cache(maxsize=1)
def profile() -> tuple[dict, list]:
    """({tag: action}, [(group, element, group mask, element mask, action)]) of Table E.1-1."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    table = dicom_anonymization_database_selector(EDITION)
    exact, ranges = {}, []
    for group, action in _GROUPS.items():
        for t in table[group]:
            if len(t) == 2:
                exact[(t[0] << 16) | t[1]] = action
            else:
                ranges.append((*t, action))
    return exact, ranges


def action_of(tag: int):
    exact, ranges = profile()
    if tag in exact:
        return exact[tag]
    g, e = tag >> 16, tag & 0xFFFF
    return next((a for g0, e0, gm, em, a in ranges if g & gm == g0 & gm and e & em == e0 & em), None)


class Deidentifier:
    """Applies the profile with UIDs and the patient pseudonym keyed by ``secret``."""

    def __init__(self, secret: bytes):
        self._key = hmac.new(secret, b"sonoseg-deidentify", hashlib.sha256).digest()

    def _mac(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """The replacement of one UID: the same for the same input, under the 64-character limit."""
        return "2.25." + str(int.from_bytes(self._mac("uid", str(value).strip())[:16], "big"))

    def patient(self, patient_id: str) -> str:
        return "ANON-" + self._mac("patient", str(patient_id).strip()).hex()[:12].upper()

    def dataset(self, ds) -> None:
        """De-identify ``ds`` in place (and its file meta), then record that it was done."""
        from pydicom.dataset import Dataset

        pid = str(ds.get("PatientID", "") or "")
        self._walk(ds)
        if "PatientID" in ds and pid:
            ds.PatientID = self.patient(pid)
        if "PatientName" in ds and pid:
            ds.PatientName = ds.PatientID
        meta = getattr(ds, "file_meta", None)
        if meta is not None and meta.get("MediaStorageSOPInstanceUID"):
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID if "SOPInstanceUID" in ds else \
                self.uid(meta.MediaStorageSOPInstanceUID)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROFILE_CODE
        ds.DeidentificationMethodCodeSequence = [code]
        ds.LongitudinalTemporalInformationModified = "REMOVED"

    def file(self, src: Path, dst: Path) -> Path:
        import pydicom

        ds = pydicom.dcmread(src)
        self.dataset(ds)
        ds.save_as(dst, enforce_file_format=True)
        return dst

    def _walk(self, ds) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            if elem.tag.is_private:
                del ds[elem.tag]
                continue
            act = action_of(tag)
            if act == "X":
                del ds[elem.tag]
            elif act in ("Z", "X/Z"):
                elem.value = [] if elem.VR == "SQ" else None
            elif elem.VR == "SQ":  # D, U*, or not in the table: keep the items, de-identify inside
                for item in elem.value:
                    self._walk(item)
            elif act is None:
                continue
            elif elem.VR == "UI":
                self._replace_uids(elem)
            elif not elem.is_empty:  # D and its combinations: a dummy of the same VR
                elem.value = self._dummy(elem.VR)

    def _replace_uids(self, elem) -> None:
        if elem.is_empty:
            return
        vals = elem.value if elem.VM > 1 else [elem.value]
        new = [self.uid(v) for v in vals]
        elem.value = new if elem.VM > 1 else new[0]

    @staticmethod
    def _dummy(vr: str):
        if vr in _NUMERIC:
            return 0
        if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
            return b"\x00\x00"
        return _DUMMY.get(vr, "REMOVED")

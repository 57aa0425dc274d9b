"""One query model for both protocols: the same filters become a QIDO-RS request or a C-FIND
identifier, and both kinds of answer become the same rows (plain dicts of DICOM keywords).

Rows carry no patient name or birth date: a search by patient ID (a pseudonym, in a research PACS)
returns the studies, not the identity."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from sonoseg.errors import ConfigError

STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
                "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                 "NumberOfSeriesRelatedInstances")
LEVELS = {"study": STUDY_FIELDS, "series": SERIES_FIELDS}


def study_tag(uid: str) -> str:
    """A short, stable, non-identifying name for a study (or series) in logs: a hash of its UID."""
    return "study-" + hashlib.sha256(str(uid).encode()).hexdigest()[:10]


_DATE = r"(\d{8}|\d{4}-\d{2}-\d{2})"
_DATE_RANGE = re.compile(rf"{_DATE}?(-{_DATE}?)?")


def dicom_date(text: str) -> str:
    """``2016-01-01``, ``20160101``, ``2016-01-01-2016-12-31``, ``-20161231``, ``20160101-`` -> the DICOM
    form (YYYYMMDD, YYYYMMDD-YYYYMMDD ...); anything else is refused with the expected form (a date
    the server would not understand must not silently match nothing)."""
    t = str(text).strip()
    m = _DATE_RANGE.fullmatch(t)
    if not t or t == "-" or m is None:
        raise ConfigError(f"study date must be YYYYMMDD or YYYY-MM-DD, or a range FROM-TO of those "
                          f"(e.g. 2016-01-01-2016-12-31), got {text!r}")
    ends = [m.group(1), m.group(3)]
    for d in ends:
        if d:
            try:
                datetime.strptime(d.replace("-", ""), "%Y%m%d")
            except ValueError:
                raise ConfigError(f"study date {d!r} is not a calendar date") from None
    plain = [d.replace("-", "") if d else "" for d in ends]
    return plain[0] + ("-" + plain[1] if m.group(2) is not None else "")


@dataclass
class Query:
    """Filters; None = any. ``study_date``: a date or a range FROM-TO (either end may be left out), each
    date YYYYMMDD or ISO YYYY-MM-DD; it becomes DICOM range matching (YYYYMMDD-YYYYMMDD)."""

    patient_id: Optional[str] = None
    study_date: Optional[str] = None
    modality: Optional[str] = None
    accession: Optional[str] = None
    study_uid: Optional[str] = None
    series_uid: Optional[str] = None

    def filters(self, level: str) -> dict[str, str]:
        if level not in LEVELS:
            raise ConfigError(f"query level must be study or series, not {level}")
        f = {"PatientID": self.patient_id, "StudyDate": dicom_date(self.study_date) if self.study_date else None,
             "AccessionNumber": self.accession,
             "StudyInstanceUID": self.study_uid}
        if level == "study":
            f["ModalitiesInStudy"] = self.modality
        else:
            f["Modality"] = self.modality
            f["SeriesInstanceUID"] = self.series_uid
        return {k: str(v) for k, v in f.items() if v}

    def identifier(self, level: str) -> Dataset:
        """C-FIND identifier: the filters plus empty return keys of the level."""
        ds = Dataset()
        ds.QueryRetrieveLevel = level.upper()
        for kw in LEVELS[level]:
            setattr(ds, kw, "")
        for kw, v in self.filters(level).items():
            setattr(ds, kw, v)
        return ds


def row(ds: Dataset, level: str) -> dict:
    """A C-FIND answer or a QIDO-RS JSON item (as a Dataset) -> {keyword: str} for the level's fields."""
    out = {}
    for kw in LEVELS[level]:
        v = ds.get(kw)
        if v is None or v == "":
            out[kw] = ""
        elif kw == "ModalitiesInStudy":
            out[kw] = "\\".join(str(x) for x in (v if isinstance(v, (list, MultiValue)) else [v]))
        else:
            out[kw] = str(v)
    return out

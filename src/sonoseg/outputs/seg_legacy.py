"""Sources written to older editions of the standard (older scanners and archives; pydicom-data's
``color-pl.dcm`` / ``color-px.dcm`` are such files), which highdicom refuses as they are:

* a retired ultrasound SOP Class (PS3.6 keeps the UIDs): highdicom has no IOD for it ("No IOD found for
  SOP Class UID"). The SEG is built as for the class that replaced it (same image modules) and then
  references each such instance by its own, retired, SOP Class UID, so the references stay exact.
* dates and times in the ACR-NEMA forms ``1994.11.05`` / ``11:20:00``, which the SEG copies (Study
  Date / Time): written in the current forms ``19941105`` / ``112000``, the same values.
"""

from __future__ import annotations

import copy
import re

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

RETIRED_SUCCESSOR = {
    "1.2.840.10008.5.1.4.1.1.6": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.3": "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage (Retired)
}


def with_current_class(ds: Dataset) -> tuple[Dataset, bool]:
    """(header to build from, whether its class was swapped); the caller's dataset is not modified."""
    successor = RETIRED_SUCCESSOR.get(str(ds.get("SOPClassUID", "")))
    if successor is None:
        return ds, False
    out = copy.copy(ds)
    out.SOPClassUID = successor
    return out, True


def restore_referenced_classes(seg: Dataset, actual: dict[str, str]) -> None:
    """Set ReferencedSOPClassUID back to ``actual`` {SOP Instance UID: class} wherever the SEG
    references those instances (ReferencedSeriesSequence and every frame's SourceImageSequence)."""
    if not actual:
        return
    items = [i for s in seg.get("ReferencedSeriesSequence", []) for i in s.get("ReferencedInstanceSequence", [])]
    items += [s for f in seg.get("PerFrameFunctionalGroupsSequence", []) for d in f.get("DerivationImageSequence", [])
              for s in d.get("SourceImageSequence", [])]
    items += list(seg.get("SourceImageSequence", []))
    for item in items:
        cls = actual.get(str(item.get("ReferencedSOPInstanceUID", "")))
        if cls is not None:
            item.ReferencedSOPClassUID = cls


_OLD_DA = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")
_OLD_TM = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}(?:\.\d{1,6})?))?$")


def current_form(elem: DataElement) -> DataElement:
    """``elem``, or a copy with an ACR-NEMA date / time value in the current form."""
    if elem.VR not in ("DA", "TM") or not isinstance(elem.value, str):
        return elem
    v = elem.value.strip()
    m = (_OLD_DA if elem.VR == "DA" else _OLD_TM).match(v)
    if not m:
        return elem
    return DataElement(elem.tag, elem.VR, "".join(g for g in m.groups() if g))

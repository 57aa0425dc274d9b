"""How a SEG codes the class head's decision (normal / benign / malignant ...) of an image.

The decision is a modifier of each segment's property type (SegmentedPropertyTypeModifierCodeSequence,
0062,0011). Class names come from the training data's labels.csv, so their meaning is the dataset's:

* names with a SNOMED CT *qualifier value* of the same meaning get it: "benign" -> 30807003 Benign,
  "malignant" -> 21594007 Malignant (both in DICOM CID 6063), "normal" -> 17621005 Normal. A qualifier
  says what the class says and no more: BUSI's "benign" covers cysts and other non-neoplastic findings,
  so a disorder such as "benign neoplasm" would overclaim, the qualifier "Benign" does not.
* any other name (a user's own classes) gets a local code, scheme ``99SONOSEG`` ("99" prefix: private to
  the producer, PS3.16 Section 8), declared in the SEG's CodingSchemeIdentificationSequence as the
  standard asks for schemes it does not define. dciodvfy still warns that it does not know the
  designator ("Unrecognized defined term <99SONOSEG>"): a site can map it with a one-line table.

SegmentDescription (0062,0006) says the same in words with the probability and the decision source,
led by the malignancy operating point where it flags the lesion ("SUSPICIOUS malignant p=0.21>=0.16; ..."),
e.g. "class head: malignant (p=0.91); lesion found (both)".
"""

from __future__ import annotations

from typing import Mapping

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

CLASS_SCHEME = "99SONOSEG"
CLASS_CODES = {"benign": codes.SCT.Benign, "malignant": codes.SCT.Malignant, "normal": codes.SCT.Normal}


def class_code(name: str) -> hd.sr.CodedConcept:
    """The coded concept for a class name: SNOMED CT qualifier where one means the same, else local."""
    code = CLASS_CODES.get(str(name).strip().lower())
    if code is not None:
        return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme_designator, meaning=code.meaning)
    return hd.sr.CodedConcept(value=str(name)[:16], scheme_designator=CLASS_SCHEME, meaning=str(name)[:64])


def add_class_finding(description: Dataset, finding: Mapping) -> Dataset:
    """Put the class head's decision (:mod:`sonoseg.infer.decision`) into a segment description."""
    cls = str(finding["class"])
    p = (finding.get("class_probabilities") or {}).get(cls)
    item = description.SegmentedPropertyTypeCodeSequence[0]
    item.SegmentedPropertyTypeModifierCodeSequence = [class_code(cls)]
    verdict = finding.get("verdict") or ("lesion found" if finding.get("lesion_found") else "no lesion found")
    text = f"class head: {cls}" + (f" (p={p:.2f})" if p is not None else "") + f"; {verdict} ({finding.get('source')})"
    tentative = "TENTATIVE outline; " if finding.get("outline") == "tentative" else ""
    description.SegmentDescription = (_suspicious_text(finding) + tentative + text)[:64]
    return description


def _suspicious_text(finding: Mapping) -> str:
    """The malignancy operating point leads the description (it is cut at 64 characters):
    "SUSPICIOUS malignant p=0.21>=0.16; " where the flag is set, nothing otherwise."""
    op = finding.get("suspicious_threshold") or {}
    if finding.get("suspicious") is not True or not op:
        return ""
    p = (finding.get("class_probabilities") or {}).get(op.get("class"))
    return f"SUSPICIOUS {op['class']}" + (f" p={p:.2f}>={float(op['threshold']):.2f}" if p is not None else "") + "; "


def declare_local_scheme(seg: Dataset) -> None:
    """CodingSchemeIdentificationSequence (SOP Common) for ``99SONOSEG`` when a segment uses it."""
    used = any(m.CodingSchemeDesignator == CLASS_SCHEME for s in seg.get("SegmentSequence", [])
               for t in s.get("SegmentedPropertyTypeCodeSequence", [])
               for m in t.get("SegmentedPropertyTypeModifierCodeSequence", []))
    if not used:
        return
    item = Dataset()
    item.CodingSchemeDesignator = CLASS_SCHEME
    item.CodingSchemeName = "sonoseg model class names"
    item.CodingSchemeResponsibleOrganization = "the site that trained the model (class names of its labels.csv)"
    seg.CodingSchemeIdentificationSequence = [item]

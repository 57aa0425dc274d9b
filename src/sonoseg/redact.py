"""Keep patient identifiers out of every log line and stream, including third-party warnings.

pydicom and highdicom quote offending element values in their warnings and errors (highdicom's
"value of data element 'Patient's Name' ... 'DOE^JANE'" or pydicom's "Invalid value for VR PN:
'Doe^Jane'"). sonoseg never puts header values into its own messages, so anything quoted in a
third-party message is treated as a possible identifier and replaced by a placeholder; the rest of
the message (what went wrong, which element) stays readable.
"""

from __future__ import annotations

import logging
import re
import warnings

PLACEHOLDER = "<redacted>"
_QUOTED = re.compile(r"""(?P<q>['"])(?:(?!(?P=q)).){1,400}?(?P=q)|`[^`]{1,400}`""")
# bytes reprs (b'...') and DICOM PN components outside quotes ("Doe^Jane")
_PN = re.compile(r"\b[^\s'\"^=]{0,64}\^[^\s'\"]{0,128}")
# py.warnings: captured warnings; pynetdicom / dicomweb_client / urllib3 quote UIDs and request paths
_THIRD_PARTY = ("pydicom", "highdicom", "nibabel", "PIL", "py", "pynetdicom", "dicomweb_client", "urllib3")
_installed = False


def redact(text: str) -> str:
    """Replace quoted values and PN-looking tokens (with '^') in a third-party message."""
    text = _QUOTED.sub(lambda m: f"'{PLACEHOLDER}'", str(text))
    return _PN.sub(PLACEHOLDER, text)


def _redacting(show):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        show(redact(str(message)), category, filename, lineno, file, line)

    showwarning._sonoseg_redacting = True
    return showwarning


def install() -> None:
    """Idempotent: a redacting ``warnings.showwarning`` (wrapping the current one, e.g. logging's
    ``captureWarnings``) and a log-record factory that rewrites
    records of third-party loggers when they are created (so every handler, present or future, and
    child loggers such as ``highdicom.seg.sop`` are covered)."""
    global _installed
    if not getattr(warnings.showwarning, "_sonoseg_redacting", False):
        warnings.showwarning = _redacting(warnings.showwarning)  # chains to logging's capture when active
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if str(record.name).split(".")[0] in _THIRD_PARTY:
            try:
                record.msg, record.args = redact(record.getMessage()), None
            except Exception:  # noqa: BLE001 - a malformed third-party record must not break logging
                record.msg, record.args = PLACEHOLDER, None
        return record

    logging.setLogRecordFactory(factory)

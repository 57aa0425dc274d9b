"""PACS exchange: find, pull and push studies over DICOMweb (dicomweb-client) and DIMSE (pynetdicom),
and a C-STORE listener that segments studies as they arrive and sends the SEG back.

Sits above :mod:`sonoseg.infer` (segmentation) and :mod:`sonoseg.store` (the results store of
``sonoseg serve``); the CLI verbs ``sonoseg pacs`` and ``sonoseg listen`` are thin layers over it.
Servers are named in a small YAML file (:mod:`sonoseg.pacs.config`); credentials never travel on the
command line. Nothing here logs patient identifiers: studies are named by a short hash of their UID.
"""

from sonoseg.pacs.config import PacsServer, load_servers, server  # noqa: F401
from sonoseg.pacs.query import Query, study_tag  # noqa: F401

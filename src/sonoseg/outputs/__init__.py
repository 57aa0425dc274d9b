"""Result writers above ``io``: DICOM Segmentation (SEG) and the overlay Secondary Capture (SC), their
coded concepts and the legacy-class fallback, and the label tables written beside NIfTI label maps.

They know DICOM and files, not models: ``infer`` (predict, the 3D path), ``serve`` and ``pacs`` call them.
"""

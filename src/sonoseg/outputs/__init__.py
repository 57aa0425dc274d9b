"""Result writers above ``io``: DICOM Segmentation (SEG) and the overlay Secondary Capture (SC), their
coded concepts and the legacy-class fallback, the label tables written beside NIfTI label maps, and the
mask overlays drawn on images (predict's overlay PNG, the SC, the evaluation report's gallery).

They know DICOM and files, not models: ``infer`` (predict, the 3D path), ``serve`` and ``pacs`` call them.
"""

"""Where the shipped default model and sample data live (kept here for existing imports; the
definitions are in :mod:`sonoseg.models.shipped`)."""

from sonoseg.models.shipped import DEFAULT_MODEL_NAME, assets_dir, default_model_path, sample_dicom_dir

__all__ = ["DEFAULT_MODEL_NAME", "assets_dir", "default_model_path", "sample_dicom_dir"]

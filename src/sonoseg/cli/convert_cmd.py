"""``sonoseg convert``: DICOM series <-> NIfTI, direction decided from the inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sonoseg.cli._common import console, fail, handle_errors


def _is_nifti(p: Path) -> bool:
    return p.name.lower().endswith(".nii") or p.name.lower().endswith(".nii.gz")


def register(app: typer.Typer) -> None:
    @app.command("convert")
    @handle_errors
    def convert_cmd(
        src: Path = typer.Argument(..., help="DICOM folder / .dcm file, or a .nii/.nii.gz file."),
        dst: Path = typer.Argument(..., help="Output .nii/.nii.gz (from DICOM) or output folder (from NIfTI)."),
        modality: str = typer.Option("OT", help="NIfTI -> DICOM: CT, MR or OT (Secondary Capture)."),
        series_uid: Optional[str] = typer.Option(None, help="DICOM -> NIfTI: pick this series when a folder holds several."),
        description: str = typer.Option("sonoseg conversion", help="NIfTI -> DICOM: SeriesDescription."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    ) -> None:
        """Convert keeping geometry (affine <-> ImagePosition/Orientation/PixelSpacing, LPS <-> RAS).

        folder or .dcm -> .nii/.nii.gz;  .nii/.nii.gz -> folder of single-frame DICOM slices.
        """
        from sonoseg.io import dicom_series_to_nifti, nifti_to_dicom_series, read_meta

        if not src.exists():
            fail(f"{src}: no such file or folder", code=2)
        if _is_nifti(src):
            if _is_nifti(dst):
                fail(f"{dst}: NIfTI input needs an output folder, not a .nii file", code=2)
            paths = nifti_to_dicom_series(src, dst, modality=modality, series_description=description, overwrite=overwrite)
            console.print(f"wrote {len(paths)} DICOM slice(s) to {dst}", highlight=False)
            return
        if not _is_nifti(dst):
            fail(f"{dst}: DICOM input needs a .nii or .nii.gz output path", code=2)
        if dst.exists() and not overwrite:
            fail(f"{dst}: exists (use --overwrite)", code=2)
        dicom_series_to_nifti(src, dst, series_uid=series_uid)
        meta = read_meta(dst)
        sp = meta.pixel_spacing_mm or (0, 0)
        console.print(
            f"wrote {dst}: {meta.columns}x{meta.rows}x{meta.frames} voxels, in-plane spacing {sp[1]:.4g} x {sp[0]:.4g} mm",
            highlight=False,
        )

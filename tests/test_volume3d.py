"""3D path units on synthetic anisotropic phantoms: slice groups, MONAI transform round trip, sliding
window vs whole-volume inference, per-organ metrics and measurements against hand computations in mm,
volume dataset validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonoseg.data.volume_phantom import make_phantom, write_phantom_dataset
from sonoseg.preprocess.slice_groups import group_starts, reassemble, split_groups
from sonoseg.preprocess.volume_config import VolumeConfig


# -- slice groups (seed 002) --------------------------------------------------------------------------------
@pytest.mark.parametrize("n,size,overlap", [(5, 65, 0), (65, 65, 8), (100, 65, 0), (130, 65, 8), (301, 32, 7)])
def test_slice_groups_have_fixed_size_and_reassemble_exactly(n, size, overlap):
    rng = np.random.default_rng(n)
    vol = rng.normal(size=(2, 6, 5, n)).astype(np.float32)  # channel, x, y, slices (last axis)
    groups = split_groups(vol, size, overlap)
    assert all(g.shape == (2, 6, 5, size) for g in groups)
    starts = group_starts(n, size, overlap)
    assert starts[0] == 0 and (n <= size or starts[-1] == n - size)
    if len(starts) > 1:
        assert min(np.diff(starts)) >= 1 and max(np.diff(starts)) <= size - overlap
    back = reassemble(groups, n, size, overlap)
    assert back.dtype == vol.dtype and np.array_equal(back, vol)  # bit for bit, nothing averaged


def test_slice_groups_take_each_slice_from_the_nearest_group_centre():
    # 10 slices, groups of 6 with overlap 2 -> starts 0 and 4; slices 4 and 5 are in both groups
    groups = [np.full((6,), 1.0), np.full((6,), 2.0)]
    out = reassemble(groups, 10, 6, 2, axis=0)
    # centres 2.5 and 6.5: slice 4 is 1.5 from the first, 2.5 from the second; slice 5: 2.5 / 1.5
    assert out.tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]


# -- transforms: original grid <-> model grid ---------------------------------------------------------------
def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_transform_round_trip_on_an_anisotropic_flipped_phantom():
    from sonoseg.preprocess.volume import base_transforms, case_dict, invert_to_original, model_grid_spacing

    image, labels = make_phantom()  # 64x56x24 voxels of 1.6x1.8x4.0 mm, x stored right-to-left
    # 1) model grid = the original spacing: orientation + crop only, the round trip is the identity
    v = VolumeConfig(labels={1: "liver", 2: "spleen", 3: "kidney"}, spacing=(1.6, 1.8, 4.0))
    base = base_transforms(v)
    img = base(case_dict(image))["image"]
    aff = np.asarray(img.affine)
    assert np.all(np.diag(aff)[:3] > 0)  # RAS: x now runs left-to-right
    assert model_grid_spacing(img) == pytest.approx((1.6, 1.8, 4.0))
    assert img.shape[1] < 64 and img.shape[2] < 56  # cropped to the body (air around it removed)
    # labels pushed to the model grid by the same transforms, then back
    d2 = base(case_dict(image, labels.array))
    lab_grid = d2["label"][0].long()
    back = invert_to_original(torch.stack([(lab_grid == c).float() for c in range(4)]), d2["image"], base)
    assert tuple(back.shape[1:]) == (64, 56, 24)
    assert np.array_equal(back.argmax(0).numpy().T, labels.array)
    # 2) isotropic 2 mm model grid: geometry comes back exactly, organs within resampling error
    v2 = v.model_copy(update={"spacing": (2.0, 2.0, 2.0)})
    base2 = base_transforms(v2)
    d3 = base2(case_dict(image, labels.array))
    assert model_grid_spacing(d3["image"]) == pytest.approx((2.0, 2.0, 2.0))
    oh = torch.stack([(d3["label"][0] == c).float() for c in range(4)])
    back2 = invert_to_original(oh, d3["image"], base2).argmax(0).numpy().T
    assert back2.shape == labels.array.shape
    for c in (1, 2, 3):
        assert _dice(back2 == c, labels.array == c) > 0.93
    # the predictor's own slab-wise resampling (affine to affine) agrees with MONAI's recorded inverse
    from sonoseg.infer.volume import resample_labels

    for d, oh_grid, expect in ((d2, torch.stack([(lab_grid == c).float() for c in range(4)]), labels.array),
                               (d3, oh, back2)):
        fast = resample_labels(oh_grid, np.asarray(d["image"].affine), (64, 56, 24), image.affine, chunk_voxels=5000).numpy().T
        general = resample_labels(oh_grid, np.asarray(d["image"].affine), (64, 56, 24), image.affine, separable=False).numpy().T
        agree = (fast == expect).mean()
        if expect is labels.array:  # identity grid: exact, both ways
            assert agree == 1.0 and np.array_equal(general, expect)
        else:  # 2 mm: separable 1-D passes == grid_sample except at exact ties between two classes
            assert (fast == general).mean() > 0.999 and agree > 0.998


def test_window_presets_and_explicit_range():
    assert VolumeConfig(window="abdomen").intensity_range() == (-160.0, 240.0)
    assert VolumeConfig(window="lung").intensity_range() == (-1350.0, 150.0)
    assert VolumeConfig(window=None, a_min=-100, a_max=300).intensity_range() == (-100.0, 300.0)
    from sonoseg.config import load_config
    from sonoseg.errors import ConfigError

    with pytest.raises(ConfigError, match="window"):
        load_config(None, ["volume={window: kidney}"])
    with pytest.raises(ConfigError, match="a_min"):
        load_config(None, ["volume={window: null}"])


# -- sliding window vs whole volume ---------------------------------------------------------------------------
def _predictor(model, roi, overlap=0.5, spacing=(1.6, 1.8, 4.0)):
    from sonoseg.config import load_config
    from sonoseg.infer.volume import VolumePredictor

    cfg = load_config(None, [f"volume={{labels: {{1: liver, 2: spleen, 3: kidney}}, spacing: {list(spacing)}, "
                             f"roi_size: {list(roi)}, overlap: {overlap}}}"])
    return VolumePredictor(model, cfg)


def test_sliding_window_equals_whole_volume_inference_when_both_fit():
    from sonoseg.models.sliding_window import make_inferer
    from sonoseg.models import create_model

    torch.manual_seed(0)
    net = create_model("unet3d", classes=4, channels=(4, 8), num_res_units=0).eval()
    x = torch.randn(1, 1, 32, 24, 16)
    whole = net(x)
    v = VolumeConfig(roi_size=(32, 24, 16), overlap=0.25)
    with torch.no_grad():
        sw = make_inferer(v)(x, net)
    assert torch.allclose(sw, whole, atol=1e-5)  # one window = the whole volume, Gaussian weight cancels
    # a point-wise network has no spatial context: any tiling with Gaussian blending must give the same map
    pointwise = torch.nn.Conv3d(1, 4, 1).eval()
    for roi in ((8, 8, 8), (16, 8, 4), (32, 24, 16)):
        with torch.no_grad():
            out = make_inferer(VolumeConfig(roi_size=roi, overlap=0.5))(x, pointwise)
        assert torch.allclose(out, pointwise(x), atol=1e-5), roi


def test_volume_predictor_tiles_agree_with_one_window_in_the_original_grid():
    torch.manual_seed(0)
    # per-voxel classifier on the windowed intensity (0..1): tiling must not change a single voxel
    net = torch.nn.Conv3d(1, 4, 1)
    with torch.no_grad():
        net.weight[:] = torch.tensor([0.0, 10.0, 20.0, 30.0]).view(4, 1, 1, 1, 1)
        net.bias[:] = torch.tensor([0.0, -4.0, -10.0, -18.0])
    image, _ = make_phantom()
    small = _predictor(net, (16, 16, 8)).predict(image)
    big = _predictor(net, (128, 128, 64)).predict(image)
    assert small.labels.shape == image.array.shape
    assert np.array_equal(small.labels, big.labels)
    assert len(np.unique(big.labels)) > 1


# -- per-organ metrics and measurements vs hand computations ----------------------------------------------------
def test_organ_metrics_match_hand_computation_in_mm():
    from sonoseg.evaluate.volume import organ_metrics

    spacing = (2.5, 0.8, 0.7)  # (z, y, x) mm
    gt = np.zeros((20, 30, 30), np.uint8)
    pred = np.zeros_like(gt)
    # organ 1: one-slice slabs 3 slices apart -> every surface voxel is exactly 3 x 2.5 mm from the other
    gt[5, 5:20, 5:25] = 1
    pred[8, 5:20, 5:25] = 1
    # organ 2: boxes of 4x10x10 (gt) and 4x10x5 (pred, inside gt)
    gt[12:16, 2:12, 2:12] = 2
    pred[12:16, 2:12, 2:7] = 2
    rows = {r["organ"]: r for r in organ_metrics(pred, gt, spacing, {1: "slab", 2: "box", 3: "absent"})}
    slab, box = rows["slab"], rows["box"]
    assert slab["dice"] == pytest.approx(0.0) and slab["iou"] == pytest.approx(0.0)
    assert slab["hd95_mm"] == pytest.approx(7.5) and slab["assd_mm"] == pytest.approx(7.5)
    vox_ml = 2.5 * 0.8 * 0.7 / 1000
    assert box["gt_ml"] == pytest.approx(400 * vox_ml) and box["pred_ml"] == pytest.approx(200 * vox_ml)
    assert box["dice"] == pytest.approx(2 * 200 / 600) and box["iou"] == pytest.approx(200 / 400)
    assert box["volume_error_ml"] == pytest.approx(-200 * vox_ml) and box["volume_error_pct"] == pytest.approx(-50.0)
    assert rows["absent"]["status"] == "absent" and np.isnan(rows["absent"]["dice"])
    assert organ_metrics(gt, gt, spacing, {2: "box"})[0]["hd95_mm"] == pytest.approx(0.0)


def test_measure_organs_volume_bbox_and_axial_diameter():
    from sonoseg.infer.volume_measure import measure_organs

    lab = np.zeros((12, 40, 50), np.uint8)  # [z, y, x]
    lab[2:7, 10:18, 5:35] = 1  # 5 slices x 8 rows x 30 columns
    aff = np.diag([-0.7, 0.8, 2.5, 1.0])  # x stored right-to-left
    rec = measure_organs(lab, aff, {1: "liver", 2: "spleen"})
    liver, spleen = rec
    assert liver["volume_ml"] == pytest.approx(5 * 8 * 30 * 0.7 * 0.8 * 2.5 / 1000, abs=1e-3)
    assert liver["bbox_mm"] == pytest.approx([30 * 0.7, 8 * 0.8, 5 * 2.5])
    assert liver["axial_diameter_mm"] == pytest.approx(np.hypot(30 * 0.7, 8 * 0.8), abs=0.01)  # the box diagonal
    assert spleen["voxels"] == 0 and spleen["volume_ml"] == 0 and spleen["bbox_mm"] is None


# -- dataset layout and validation ------------------------------------------------------------------------------
def test_validate_volumes_reports_grid_mismatch_and_accepts_reordered_axes(tmp_path):
    import nibabel as nib

    from sonoseg.data.volumes import discover_volumes, is_volume_dataset, read_class_names, validate_volumes
    from sonoseg.io import write_nifti

    root = write_phantom_dataset(tmp_path / "ds", n=3, shape_xyz=(24, 20, 8))
    assert is_volume_dataset(root) and read_class_names(root) == {1: "liver", 2: "spleen", 3: "kidney"}
    assert validate_volumes(root).ok
    # case1: the same grid stored with z reversed (as a DICOM series read bottom-up) -> still fine
    img = nib.load(str(root / "masks" / "case1.nii.gz"))
    flipped = nib.orientations.apply_orientation(np.asarray(img.dataobj), [[0, 1], [1, 1], [2, -1]])
    aff = img.affine @ nib.orientations.inv_ornt_aff([[0, 1], [1, 1], [2, -1]], img.shape)
    nib.save(nib.Nifti1Image(flipped, aff), str(root / "masks" / "case1.nii.gz"))
    # case2: the mask written on another spacing -> error naming the file
    _, lab = make_phantom(shape_xyz=(24, 20, 8), spacing_xyz=(1.6, 1.8, 3.0))
    write_nifti(lab, root / "masks" / "case2.nii.gz")
    rep = validate_volumes(root)
    assert not rep.ok
    bad = [p for p in rep.errors if p.kind == "grid_mismatch"]
    assert [p.stem for p in bad] == ["case2"] and "spacing" in bad[0].message
    assert [s.stem for s in discover_volumes(root)] == ["case0", "case1", "case2"]


# -- networks ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [("unet3d", {"channels": (4, 8, 16)}), ("dynunet", {"filters": (4, 8, 16)}),
                                         ("segresnet", {"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)})])
def test_monai_3d_networks_from_the_registry_take_any_volume_size(name, params):
    from sonoseg.models import create_model

    torch.manual_seed(0)
    model = create_model(name, classes=3, **params).eval()
    assert model.spec["params"].get("spatial_dims", 3) == 3 and model.multiple == 4
    with torch.no_grad():
        y = model(torch.randn(1, 1, 13, 10, 7))
    assert y.shape == (1, 3, 13, 10, 7)
    with pytest.raises(__import__("sonoseg.errors", fromlist=["ConfigError"]).ConfigError):
        create_model(name, encoder="resnet18")


def test_window_shrinks_to_small_volumes_instead_of_padding_them():
    from sonoseg.models.sliding_window import effective_roi

    assert effective_roi((96, 96, 96), (167, 167, 14), 8) == (96, 96, 16)
    assert effective_roi((96, 96, 96), (200, 90, 96), 8) == (96, 96, 96)
    assert effective_roi((64, 64, 32), (10, 7, 3), 1) == (10, 7, 3)


def test_largest_component_per_label_keeps_one_piece_per_organ():
    from sonoseg.infer.volume import largest_component_per_label

    lab = np.zeros((6, 10, 10), np.uint8)
    lab[1:4, 1:5, 1:5] = 1  # 48 voxels
    lab[5, 8, 8] = 1  # a stray voxel of organ 1
    lab[0, 8:10, 0:2] = 2  # organ 2: one piece, kept whole
    lab[2, 6, 6] = 1
    lab[3, 7, 7] = 1  # diagonal neighbour of (2,6,6): 26-connected, still smaller than the box
    out = largest_component_per_label(lab)
    assert (out == 1).sum() == 48 and (out == 2).sum() == 4 and out[5, 8, 8] == 0


# -- training datasets ------------------------------------------------------------------------------------------
def test_volume_dataset_patches_are_balanced_reproducible_and_slice_groups_fixed(tmp_path):
    from sonoseg.data.volume_dataset import VolumeDataset
    from sonoseg.data.volumes import discover_volumes

    root = write_phantom_dataset(tmp_path / "ds", n=2, shape_xyz=(40, 36, 20))
    cases = discover_volumes(root)
    v = VolumeConfig(labels={1: "liver", 2: "spleen", 3: "kidney"}, spacing=(2.0, 2.0, 4.0), patch_size=(16, 16, 8),
                     num_samples=3, pos=1.0, neg=0.0)

    def epoch_items(epoch):
        ds = VolumeDataset(cases, v, train=True, seed=7)
        ds.set_epoch(epoch)
        return [ds[k] for k in range(len(ds))]

    a, b, c = epoch_items(1), epoch_items(1), epoch_items(2)
    assert len(a) == 6 and all(it["image"].shape == (1, 16, 16, 8) and it["mask"].dtype == torch.int64 for it in a)
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b))  # same (seed, epoch): same patches (resume)
    assert not all(torch.equal(x["image"], y["image"]) for x, y in zip(a, c))
    assert all(int(it["mask"].max()) > 0 for it in a)  # pos=1, neg=0: every patch is centred on an organ voxel
    # seed 002's slice groups: fixed 4-slice groups with overlap 1 over each case's slices on the model grid
    from sonoseg.preprocess.volume_config import SliceGroupConfig

    g = VolumeDataset(cases, v.model_copy(update={"slice_group": SliceGroupConfig(size=4, overlap=1)}), train=True, seed=7)
    n_slices = [g.case(i)[0].shape[-1] for i in range(2)]
    from sonoseg.preprocess.slice_groups import group_starts

    assert len(g) == sum(len(group_starts(n, 4, 1)) for n in n_slices)
    assert all(g[k]["image"].shape == (1, 16, 16, 4) for k in range(len(g)))
    val = VolumeDataset(cases, v, train=False)
    assert len(val) == 2 and val[0]["image"].shape == g.case(0)[0].shape

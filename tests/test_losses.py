"""Losses against independent numpy computations on small tensors (binary and multi-class)."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sonoseg.config import TrainConfig
from sonoseg.errors import ConfigError
from sonoseg.train.losses import LOSS_NAMES, build_loss

# ---------------------------------------------------------------- numpy references


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(x):  # N x K x H x W
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_onehot(t, k):  # N x H x W -> N x K x H x W
    return (t[:, None] == np.arange(k)[None, :, None, None]).astype(np.float64)


def np_dice(p, t, smooth=1.0, first=0):
    """Per-class soft Dice over batch+pixels, mean over classes[first:]."""
    losses = []
    for c in range(first, p.shape[1]):
        inter = (p[:, c] * t[:, c]).sum()
        losses.append(1 - (2 * inter + smooth) / (p[:, c].sum() + t[:, c].sum() + smooth))
    return float(np.mean(losses))


def np_tversky(p, t, alpha, beta, smooth=1.0):
    losses = []
    for c in range(p.shape[1]):
        tp = (p[:, c] * t[:, c]).sum()
        fp = (p[:, c] * (1 - t[:, c])).sum()
        fn = ((1 - p[:, c]) * t[:, c]).sum()
        losses.append(1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth))
    return float(np.mean(losses))


def np_bce(z, t):
    p = np_sigmoid(z)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


def np_ce(z, labels):
    p = np_softmax(z)
    pt = np.take_along_axis(p, labels[:, None], axis=1)
    return float(np.mean(-np.log(pt)))


def np_focal_binary(z, t, gamma):
    p = np_sigmoid(z)
    pt = np.where(t == 1, p, 1 - p)
    return float(np.mean(-((1 - pt) ** gamma) * np.log(pt)))


def np_focal_multi(z, labels, gamma):
    p = np_softmax(z)
    pt = np.take_along_axis(p, labels[:, None], axis=1)
    return float(np.mean(-((1 - pt) ** gamma) * np.log(pt)))


def seed004_dice_bce(pred_logits, target, weight=0.5):
    """Seed 004's DiceBCELoss, transcribed (weight * bce + (1 - weight) * dice, smooth=1)."""
    pred = torch.sigmoid(pred_logits)
    p, t = pred.reshape(-1), target.reshape(-1)
    inter = (p * t).sum()
    dice = 1 - (2.0 * inter + 1) / (p.sum() + t.sum() + 1)
    bce = F.binary_cross_entropy(pred.squeeze(), target.squeeze(), reduction="mean")
    return weight * bce + dice * (1 - weight)


# ---------------------------------------------------------------- fixtures

Z_BIN = np.array(
    [[[[0.5, -1.0, 2.0], [1.5, -0.3, 0.0]]], [[[-2.0, 0.7, 1.1], [0.2, -1.4, 3.0]]]]
)  # 2 x 1 x 2 x 3
T_BIN = np.array([[[[1, 0, 1], [1, 0, 0]]], [[[0, 1, 1], [0, 0, 1]]]], dtype=np.float64)

RNG = np.random.default_rng(7)
Z_MC = RNG.normal(size=(2, 3, 3, 4)) * 1.5
L_MC = np.array(
    [[[0, 0, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]], [[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]]
)  # class 2 absent on purpose


def tb(z=Z_BIN, t=T_BIN):
    return torch.tensor(z, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)


def tm(z=Z_MC, labels=L_MC):
    return torch.tensor(z, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)


def val(x):
    return float(x.detach())


# ---------------------------------------------------------------- binary


def test_binary_dice_matches_hand_computation():
    p = np_sigmoid(Z_BIN)
    assert val(build_loss("dice", 1)(*tb())) == pytest.approx(np_dice(p, T_BIN), abs=1e-6)
    # smooth is a parameter
    assert val(build_loss("dice", 1, smooth=0.1)(*tb())) == pytest.approx(
        np_dice(p, T_BIN, smooth=0.1), abs=1e-6
    )


def test_dice_hand_numbers_for_saturated_logits():
    # logits +-30 -> p = t exactly: 8 positives in the batch -> perfect overlap -> loss 0
    t = T_BIN
    z = np.where(t == 1, 30.0, -30.0)
    assert val(build_loss("dice", 1)(*tb(z, t))) == pytest.approx(0.0, abs=1e-6)
    # prediction all-on over 12 pixels, 6 positives: 1 - (2*6 + 1) / (12 + 6 + 1) = 6/19
    z = np.full_like(t, 30.0)
    assert val(build_loss("dice", 1)(*tb(z, t))) == pytest.approx(6 / 19, abs=1e-6)


def test_dice_empty_target_smoothing():
    empty = np.zeros_like(T_BIN)
    # empty target, empty prediction -> (0 + 1) / (0 + 0 + 1) -> loss ~0
    assert val(build_loss("dice", 1)(*tb(np.full_like(empty, -30.0), empty))) == pytest.approx(0.0, abs=1e-6)
    # empty target, confident prediction on all 12 pixels -> 1 - 1 / (12 + 1)
    assert val(build_loss("dice", 1)(*tb(np.full_like(empty, 30.0), empty))) == pytest.approx(12 / 13, abs=1e-6)
    # and the combined loss stays finite on empty targets
    loss = build_loss("dice_bce", 1)(*tb(np.zeros_like(empty), empty))
    assert np.isfinite(val(loss))


def test_bce_matches_hand_computation():
    assert val(build_loss("bce", 1)(*tb())) == pytest.approx(np_bce(Z_BIN, T_BIN), abs=1e-6)
    # "ce" on a binary model is the same binary cross-entropy
    assert val(build_loss("ce", 1)(*tb())) == pytest.approx(np_bce(Z_BIN, T_BIN), abs=1e-6)


def test_bce_pos_weight():
    p = np_sigmoid(Z_BIN)
    ref = np.mean(-(3.0 * T_BIN * np.log(p) + (1 - T_BIN) * np.log(1 - p)))
    assert val(build_loss("bce", 1, pos_weight=3.0)(*tb())) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("w", [0.5, 0.3, 0.0, 1.0])
def test_dice_bce_weighting(w):
    p = np_sigmoid(Z_BIN)
    ref = w * np_dice(p, T_BIN) + (1 - w) * np_bce(Z_BIN, T_BIN)
    loss = build_loss("dice_bce", 1, dice_weight=w)
    assert val(loss(*tb())) == pytest.approx(ref, abs=1e-6)
    assert val(loss.components["dice"]) == pytest.approx(np_dice(p, T_BIN), abs=1e-6)
    assert val(loss.components["bce"]) == pytest.approx(np_bce(Z_BIN, T_BIN), abs=1e-6)


def test_dice_bce_equals_seed004_reference():
    z, t = tb()
    ours = build_loss("dice_bce", 1, dice_weight=0.5)(z, t)
    assert val(ours) == pytest.approx(val(seed004_dice_bce(z, t, weight=0.5)), abs=1e-6)
    # seed's `weight` multiplies BCE, ours multiplies Dice
    ours = build_loss("dice_bce", 1, dice_weight=0.2)(z, t)
    assert val(ours) == pytest.approx(val(seed004_dice_bce(z, t, weight=0.8)), abs=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_binary_focal(gamma):
    loss = build_loss("focal", 1, gamma=gamma)
    assert val(loss(*tb())) == pytest.approx(np_focal_binary(Z_BIN, T_BIN, gamma), abs=1e-6)


def test_binary_focal_alpha():
    p = np_sigmoid(Z_BIN)
    pt = np.where(T_BIN == 1, p, 1 - p)
    at = np.where(T_BIN == 1, 0.25, 0.75)
    ref = np.mean(-at * (1 - pt) ** 2 * np.log(pt))
    assert val(build_loss("focal", 1, gamma=2.0, alpha=0.25)(*tb())) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("alpha,beta", [(0.3, 0.7), (0.7, 0.3), (0.5, 0.5)])
def test_binary_tversky(alpha, beta):
    p = np_sigmoid(Z_BIN)
    loss = build_loss("tversky", 1, alpha=alpha, beta=beta)
    assert val(loss(*tb())) == pytest.approx(np_tversky(p, T_BIN, alpha, beta), abs=1e-6)


def test_tversky_half_half_is_dice():
    z, t = tb()
    # (TP + s/2) / (TP + FP/2 + FN/2 + s/2) == (2 TP + s) / (2 TP + FP + FN + s)
    tv = build_loss("tversky", 1, alpha=0.5, beta=0.5, smooth=0.5)(z, t)
    assert val(tv) == pytest.approx(val(build_loss("dice", 1, smooth=1.0)(z, t)), abs=1e-6)


def test_tversky_default_punishes_misses_more_than_false_alarms():
    t = np.zeros((1, 1, 4, 4))
    t[..., :2, :] = 1  # 8 positive pixels
    miss = np.where(t == 1, -30.0, -30.0)  # predicts nothing: 8 FN
    alarm = np.where(t == 1, 30.0, 30.0)  # predicts everything: 8 FP
    loss = build_loss("tversky", 1)  # alpha (FP) 0.3, beta (FN) 0.7
    assert val(loss(*tb(miss, t))) == pytest.approx(1 - 1 / (0.7 * 8 + 1), abs=1e-6)
    assert val(loss(*tb(alarm, t))) == pytest.approx(1 - 9 / (8 + 0.3 * 8 + 1), abs=1e-6)


def test_binary_target_without_channel_axis():
    z, t = tb()
    a = build_loss("dice_bce", 1)(z, t)
    b = build_loss("dice_bce", 1)(z, t[:, 0])
    assert val(a) == pytest.approx(val(b), abs=1e-7)


# ---------------------------------------------------------------- multi-class


def test_multiclass_dice_matches_hand_computation():
    p, oh = np_softmax(Z_MC), np_onehot(L_MC, 3)
    assert val(build_loss("dice", 3)(*tm())) == pytest.approx(np_dice(p, oh), abs=1e-6)
    no_bg = build_loss("dice", 3, include_background=False)
    assert val(no_bg(*tm())) == pytest.approx(np_dice(p, oh, first=1), abs=1e-6)


def test_multiclass_ce_matches_hand_computation():
    assert val(build_loss("ce", 3)(*tm())) == pytest.approx(np_ce(Z_MC, L_MC), abs=1e-6)
    assert val(build_loss("bce", 3)(*tm())) == pytest.approx(np_ce(Z_MC, L_MC), abs=1e-6)


def test_multiclass_ce_class_weights():
    w = np.array([0.2, 1.0, 3.0])
    p = np_softmax(Z_MC)
    pt = np.take_along_axis(p, L_MC[:, None], axis=1)[:, 0]
    wi = w[L_MC]
    ref = np.sum(-wi * np.log(pt)) / wi.sum()  # torch's weighted mean
    loss = build_loss("ce", 3, class_weights=list(w))
    assert val(loss(*tm())) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("w", [0.5, 0.25])
def test_ce_dice_weighting(w):
    p, oh = np_softmax(Z_MC), np_onehot(L_MC, 3)
    ref = w * np_dice(p, oh) + (1 - w) * np_ce(Z_MC, L_MC)
    assert val(build_loss("ce_dice", 3, dice_weight=w)(*tm())) == pytest.approx(ref, abs=1e-6)
    assert val(build_loss("dice_bce", 3, dice_weight=w)(*tm())) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_multiclass_focal(gamma):
    loss = build_loss("focal", 3, gamma=gamma)
    assert val(loss(*tm())) == pytest.approx(np_focal_multi(Z_MC, L_MC, gamma), abs=1e-6)


def test_multiclass_tversky():
    p, oh = np_softmax(Z_MC), np_onehot(L_MC, 3)
    loss = build_loss("tversky", 3, alpha=0.3, beta=0.7)
    assert val(loss(*tm())) == pytest.approx(np_tversky(p, oh, 0.3, 0.7), abs=1e-6)


def test_multiclass_absent_class_with_empty_prediction_scores_perfect():
    # class 2 absent and predicted nowhere: its Dice term is (0+1)/(0+0+1) -> contributes loss 0
    z = np.where(np_onehot(L_MC, 3) == 1, 30.0, -30.0)
    assert val(build_loss("dice", 3)(*tm(z))) == pytest.approx(0.0, abs=1e-6)


def test_multiclass_target_with_channel_axis():
    z, lab = tm()
    a = build_loss("ce_dice", 3)(z, lab)
    b = build_loss("ce_dice", 3)(z, lab[:, None])
    assert val(a) == pytest.approx(val(b), abs=1e-7)


# ---------------------------------------------------------------- build_loss / behaviour


def test_loss_names_are_the_config_literal():
    literal = typing.get_args(TrainConfig.model_fields["loss"].annotation)
    assert set(literal) == set(LOSS_NAMES)


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_prefers_the_right_answer_and_has_gradients(name, classes):
    torch.manual_seed(0)
    if classes == 1:
        target = (torch.rand(2, 1, 8, 8) > 0.6).float()
        good = (target * 2 - 1) * 4.0
    else:
        target = torch.randint(0, classes, (2, 8, 8))
        good = F.one_hot(target, classes).permute(0, 3, 1, 2).float() * 8.0 - 4.0
    bad = -good
    loss = build_loss(name, classes)
    assert val(loss(good, target)) < val(loss(bad, target))
    logits = torch.zeros_like(good, requires_grad=True)
    out = loss(logits, target)
    out.backward()
    assert out.ndim == 0 and torch.isfinite(out)
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # one gradient step moves towards the target
    with torch.no_grad():
        stepped = logits - 1.0 * logits.grad
    assert val(loss(stepped, target)) < val(out)


def test_low_precision_logits_are_computed_in_float32():
    z, t = tb()
    ref = val(build_loss("dice_bce", 1)(z, t))
    out = build_loss("dice_bce", 1)(z.to(torch.bfloat16), t)
    assert out.dtype == torch.float32
    assert val(out) == pytest.approx(ref, abs=2e-2)


def test_build_loss_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown loss"):
        build_loss("hinge", 1)
    with pytest.raises(ConfigError, match="dice_weight"):
        build_loss("dice_bce", 1, dice_weight=1.5)
    with pytest.raises(ConfigError, match="option"):
        build_loss("dice", 1, gamma=2.0)
    with pytest.raises(ConfigError, match="option"):
        build_loss("bce", 1, gamma=2.0)
    with pytest.raises(ConfigError, match="class_weights"):
        build_loss("ce", 3, class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="classes"):
        build_loss("dice", 0)


def test_shape_errors_are_clear():
    loss = build_loss("dice", 3)
    with pytest.raises(ValueError, match="channels"):
        loss(torch.zeros(2, 2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="target shape"):
        loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long))

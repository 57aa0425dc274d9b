"""One typed configuration for the whole pipeline: YAML file + ``key.sub=value`` CLI overrides.

Each stage reads only its own section; the full object is stored with every run and checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field

from sonoseg.errors import ConfigError
from sonoseg.preprocess.config import PreprocessConfig
from sonoseg.preprocess.volume_config import VolumeConfig


class AugmentConfig(BaseModel):
    """Joint image+mask augmentation (albumentations). Applied to the training split only."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    hflip: float = 0.5
    vflip: float = 0.0
    rotate_limit: float = 15.0  # degrees
    shift_limit: float = 0.2  # fraction of size (seed 004: +-20%)
    scale_range: tuple[float, float] = (0.5, 2.0)  # seed 004
    affine_p: float = 0.7
    brightness_contrast: float = 0.2
    brightness_contrast_p: float = 0.5
    gauss_noise_std: tuple[float, float] = (0.0, 0.05)  # on 0..1 images
    gauss_noise_p: float = 0.0
    speckle_sigma: tuple[float, float] = (0.0, 0.15)  # multiplicative noise I*(1+n)
    speckle_p: float = 0.0
    # scanner-like intensity curves and resolution (generalisation to other machines)
    gamma_range: tuple[float, float] = (0.7, 1.5)  # I ** gamma
    gamma_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # Gaussian blur, pixels of the model grid
    blur_p: float = 0.0


class ClassificationConfig(BaseModel):
    """Image-level class head on the segmentation encoder (smp ``aux_params``), trained jointly.

    ``names`` come from the class column of labels.csv at training time (sorted) unless given; a
    dataset without a class column turns the head off. Loss = segmentation loss + ``loss_weight`` x
    cross-entropy, with ``class_weights`` "balanced" (N / (K n_k) on the training split), "none" or
    explicit per-class weights in ``names`` order."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    names: list[str] = Field(default_factory=list)
    dropout: float = Field(0.2, ge=0, lt=1)
    pooling: Literal["avg", "max"] = "avg"
    loss_weight: float = Field(0.5, ge=0)
    class_weights: Literal["balanced", "none"] | list[float] = "balanced"
    # "no lesion" class (e.g. BUSI's "normal"): its images train the mask towards empty; used by predict's
    # decision rule (see sonoseg.infer.decision). null: no such class.
    no_lesion_class: Optional[str] = "normal"
    # Temperature scaling (Guo et al. 2017): inference divides the class logits by it before the
    # softmax. 1 = off. Fit on the validation split (sonoseg.evaluate.calibration.fit_temperature,
    # scripts/fit_temperature.py); it changes the probabilities, never the predicted class or an AUC.
    temperature: float = Field(1.0, gt=0)
    # Decision policy (sonoseg.infer.decision.DecisionPolicy), chosen on validation images at ship time
    # (sonoseg.evaluate.operating_point): how the heads decide "lesion found", and the "suspicious" flag.
    lesion_rule: Literal["argmax", "mask", "threshold", "mask_or_threshold"] = "argmax"
    no_lesion_threshold: Optional[float] = Field(None, gt=0, le=1)
    suspicious_class: Optional[str] = None
    suspicious_threshold: Optional[float] = Field(None, ge=0, le=1)


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "unet"  # registry name, see sonoseg.models.list_models()
    encoder: Optional[str] = None  # smp encoder (e.g. resnet18, efficientnet-b0, mobilenet_v2)
    encoder_weights: Optional[str] = None  # local file path, or a name resolved from the local cache
    in_channels: int = 1
    classes: int = 1  # 1 = binary (sigmoid); K>1 = multi-class incl. background (softmax)
    params: dict[str, Any] = Field(default_factory=dict)  # extra kwargs for the architecture
    classification: Optional[ClassificationConfig] = None  # image-level class head (off when None)
    version: Optional[str] = None  # e.g. "busi_default v3"; set when a model is shipped, shown by predict
    # Mixed-precision int8: ONNX node-name prefixes (e.g. "/model/encoder/blocks.0/") kept in fp32 when the
    # model is quantised, the layers int8 disturbs most; chosen per model on validation images at ship time.
    int8_keep_float: list[str] = Field(default_factory=list)

    def class_names(self) -> list[str]:
        """Names of the class head's outputs, [] when the model has none."""
        c = self.classification
        return list(c.names) if c is not None and c.enabled else []

    def head_spec(self) -> Optional[dict]:
        """``create_model(classification=...)`` argument, None without a (resolved) class head."""
        names = self.class_names()
        if not names:
            return None
        return {"classes": len(names), "dropout": self.classification.dropout, "pooling": self.classification.pooling}


class DataSource(BaseModel):
    """One dataset of a multi-source training: its folder, its own split file and a sampling weight.

    ``weight`` multiplies how likely each of this source's training images is to be drawn (1 for every
    source = each image once per epoch, plain shuffling); ``name`` labels its validation columns
    (default: the folder's name)."""

    model_config = ConfigDict(extra="forbid")

    root: str
    split_file: Optional[str] = None
    weight: float = Field(1.0, gt=0)
    name: Optional[str] = None

    def label(self) -> str:
        return self.name or Path(self.root).name


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Optional[str] = None
    split_file: Optional[str] = None
    # several datasets trained together (each keeps its split; validation is reported per source);
    # when given, root/split_file are not used
    sources: list[DataSource] = Field(default_factory=list)

    def source_list(self) -> list[DataSource]:
        """The sources to train on: ``sources``, else the single ``root`` (+ ``split_file``)."""
        if self.sources:
            return list(self.sources)
        return [DataSource(root=self.root, split_file=self.split_file)] if self.root else []
    train_split: str = "train"
    val_split: str = "val"
    cache_dir: Optional[str] = None  # preprocessed-image cache; default: <run>/../.cache
    num_workers: int = 0
    batch_size: int = 8


class QatConfig(BaseModel):
    """Quantisation-aware fine-tuning (sonoseg.runtime.qat): from ``start_epoch`` on, the trainer runs the
    model as the exporter's static int8 build will (conv/linear weights symmetric per channel, their
    inputs uint8 with moving-average min/max ranges), so training learns weights that survive int8.
    Checkpoints stay plain fp32 models; export and quantise them as any other."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    start_epoch: int = Field(1, ge=1)  # epochs before it train in plain fp32
    # 7: onnxruntime's reduce_range weights (-64..64, CPUs without VNNI); 8: full range (-127..127).
    # null: the int8 scheme this CPU's export will use (sonoseg.system.int8_scheme.default_scheme),
    # resolved when training starts and recorded in the run's config
    weight_bits: Optional[Literal[7, 8]] = None
    per_channel: bool = True  # as the exporter quantises weights
    # layer input ranges: "ema" = moving average of each batch's min/max with weight observer_momentum
    # (torch's default for QAT); "minmax" = the extremes of every batch seen, as the exporter's calibration
    observer: Literal["ema", "minmax"] = "ema"
    observer_momentum: float = Field(0.01, gt=0, le=1)


class DistillConfig(BaseModel):
    """Knowledge distillation (sonoseg.train.distill): a smaller or faster student learns the ``teacher``
    checkpoint's soft masks and class probabilities beside the ground truth. The teacher runs once over
    the training images, unaugmented, at its own input size (with horizontal-flip TTA if ``teacher_tta``);
    its outputs are cached and moved with each image by the same geometric augmentation. The loss is
    ``(1 - weight) * ground-truth loss + weight * (soft-mask BCE/Dice + class-loss weight * soft class CE)``."""

    model_config = ConfigDict(extra="forbid")

    teacher: Optional[str] = None  # checkpoint path; None = no distillation
    weight: float = Field(0.5, ge=0, le=1)
    teacher_tta: bool = True


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = 50
    loss: Literal["dice", "bce", "dice_bce", "ce", "ce_dice", "dice_ce", "focal", "tversky"] = "dice_bce"
    dice_weight: float = 0.5  # weight of the Dice term in combined losses
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: Literal["plateau", "cosine", "none"] = "plateau"
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    min_lr: float = 1e-6
    grad_clip_norm: Optional[float] = 1.0
    amp: bool = True  # mixed precision, CUDA only
    early_stopping_patience: Optional[int] = 15
    seed: int = 42
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    tensorboard: bool = False
    threads: Optional[int] = None  # torch intra-op threads on CPU
    # NHWC activations for 2D models: oneDNN's convolutions train ~1.4x faster per epoch on CPU
    # (bench/train_epoch.py); the weights and checkpoints are the same either way
    channels_last: bool = True
    qat: QatConfig = Field(default_factory=QatConfig)  # quantisation-aware fine-tuning (off by default)
    distill: DistillConfig = Field(default_factory=DistillConfig)  # learn from a teacher model (off by default)


class PostprocessConfig(BaseModel):
    """Inference-time cleanup that travels with a model (chosen on the validation split);
    CLI flags of predict/evaluate override it."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, gt=0, lt=1)  # binary models: foreground probability cut-off
    keep_largest: bool = False
    min_size: int = Field(0, ge=0)  # pixels
    fill_holes: bool = False
    tta: list[Literal["h", "v"]] = Field(default_factory=list)  # flip test-time augmentation
    ellipse_fit: bool = False  # replace each label's largest component by its fitted ellipse (fetal head)
    temporal_window: int = Field(1, ge=1)  # cine: mean probability over this many frames (centred); 1 = off
    # Binary models with a class head: where the decision finds a lesion but the mask is empty, outline the
    # region of P >= tentative_fraction x peak around the peak (peak >= tentative_min_peak), marked tentative
    # (sonoseg.infer.postprocess.tentative_region). Off by default: on both tiers' val splits it outlined
    # more normal images than lesions (docs/breast_v4/tentative_outline_rule.md).
    tentative_outline: bool = False
    tentative_fraction: float = Field(0.5, gt=0, lt=1)
    tentative_min_peak: float = Field(0.1, gt=0, lt=1)


class MeasureConfig(BaseModel):
    """How masks become measurements (predict, measure, evaluate); see sonoseg.infer.measure."""

    model_config = ConfigDict(extra="forbid")

    contour: Literal["edge", "centre"] = "edge"  # outer pixel edge | pixel-centre boundary
    biometry: bool = False  # HC / BPD / OFD of each frame's largest structure (fetal head)
    names: dict[int, str] = Field(default_factory=dict)  # label value -> structure name


class SonosegConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    volume: Optional[VolumeConfig] = None  # set: the 3D (CT) path (sonoseg.preprocess.volume)

    @property
    def is_3d(self) -> bool:
        return self.volume is not None


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    cur[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings; values are parsed as YAML (so 1e-3, [256,256], null work)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return data


def read_config_file(path: str | Path) -> dict:
    """The YAML mapping of a config file; ConfigError naming the file when it is missing or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections (preprocess:, model:, ...), not {type(data).__name__}")
    return data


def layered(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, key by key inside sections (a mapping merges, any other value replaces)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = layered(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None,
                base: Optional[dict] = None) -> SonosegConfig:
    """``base`` (default: the built-in defaults), the YAML at ``path`` layered over it, then ``key=value``
    overrides."""
    data: dict = dict(base or {})
    if path is not None:
        data = layered(data, read_config_file(path))
    data = apply_overrides(data, overrides or [])
    try:
        return SonosegConfig.model_validate(data)
    except Exception as exc:  # pydantic ValidationError -> one line
        first = str(exc).splitlines()
        raise ConfigError("invalid config: " + " ".join(first[:3])) from exc


def save_config(cfg: BaseModel, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

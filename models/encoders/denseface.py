"""DenseFace: DenseNet-BC (depth 100, growth 12, 3 dense blocks, compression 0.5) for 64x64 gray faces,
trained on FER+ (8 classes). Its 342-d penultimate feature is the paper's per-frame video feature.

Channels: stem 2 * growth = 24; block 1: 24 + 16 * 12 = 216 -> transition 108; block 2: 108 + 192 = 300
-> 150; block 3: 150 + 192 = 342 -> BN, ReLU, global average pool -> 342-d -> linear(8).
Spatial: 64 -> 32 -> 16 (two 2x2 average-pool transitions).

``stem_stride: 2`` halves the side before the first block (32 -> 16 -> 8): the same 342-d feature for a
third to a quarter of the cost (2 CPU cores, ONNX Runtime, batches of 8: 36-40 ms per face for the
paper's network, 8-9 ms with the strided stem; ``benchmarks/face_models.py``).

No pretrained PyTorch weights exist; ``training/denseface/train.py`` trains them on FER+ and writes a
safetensors file this module loads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FERPLUS_CLASSES: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
MEAN = 131.0754  # gray-level statistics of the FER+ training faces (paper / MMIN)
STD = 47.858
INPUT_SIZE = 64


@dataclass
class DenseFaceConfig:
    depth: int = 100
    growth: int = 12
    num_blocks: int = 3
    compression: float = 0.5
    num_classes: int = len(FERPLUS_CLASSES)
    drop_rate: float = 0.0
    stem_stride: int = 1  # 1: the paper's network; 2: the first block at half the side (a third of the cost)

    def __post_init__(self) -> None:
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if (self.depth - 4) % (2 * self.num_blocks) != 0:
            raise ValueError(f"DenseNet-BC depth {self.depth} must be 6k + 4 for {self.num_blocks} blocks")
        if not 0 < self.compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {self.compression}")

    @property
    def layers_per_block(self) -> int:
        return (self.depth - 4) // (2 * self.num_blocks)  # 16 bottleneck layers for depth 100

    @property
    def feature_dim(self) -> int:
        c = 2 * self.growth
        for b in range(self.num_blocks):
            c += self.layers_per_block * self.growth
            if b < self.num_blocks - 1:
                c = int(c * self.compression)
        return c


class Bottleneck(nn.Module):
    """BN-ReLU-conv1x1(4k) BN-ReLU-conv3x3(k), output concatenated to the input."""

    def __init__(self, cin: int, growth: int, drop: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        if self.drop > 0:
            y = F.dropout(y, self.drop, self.training)
        return torch.cat([x, y], dim=1)


class Transition(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseFace(nn.Module):
    def __init__(self, config: DenseFaceConfig | None = None) -> None:
        super().__init__()
        self.config = config or DenseFaceConfig()
        cfg = self.config
        c = 2 * cfg.growth
        self.stem = nn.Conv2d(1, c, 3, stride=cfg.stem_stride, padding=1, bias=False)
        stages: list[nn.Module] = []
        for b in range(cfg.num_blocks):
            layers: list[nn.Module] = []
            for _ in range(cfg.layers_per_block):
                layers.append(Bottleneck(c, cfg.growth, cfg.drop_rate))
                c += cfg.growth
            stages.append(nn.Sequential(*layers))
            if b < cfg.num_blocks - 1:
                cout = int(c * cfg.compression)
                stages.append(Transition(c, cout))
                c = cout
        self.features = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, cfg.num_classes)
        self.feature_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, 1, 64, 64] normalised gray. Returns (logits [N, 8], feature [N, 342])."""
        y = self.features(self.stem(x))
        feature = F.relu(self.norm(y)).mean(dim=(2, 3))
        return self.classifier(feature), feature


def preprocess(gray: np.ndarray) -> torch.Tensor:
    """uint8 [N, 64, 64] -> float32 [N, 1, 64, 64], (x - 131.0754) / 47.858."""
    g = np.asarray(gray)
    if g.ndim == 2:
        g = g[None]
    if g.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"DenseFace needs 64x64 crops, got {g.shape}")
    return ((torch.from_numpy(g.astype(np.float32)) - MEAN) / STD).unsqueeze(1)


def save_denseface(
    path: str | Path, model: DenseFace, extra: dict | None = None, class_names: tuple[str, ...] | None = None
) -> None:
    """Weights with their config and class names (FER+'s eight unless given), so the file describes
    itself."""
    from safetensors.torch import save_file

    names = tuple(class_names) if class_names is not None else FERPLUS_CLASSES
    if len(names) != model.config.num_classes:
        raise ValueError(f"{len(names)} class names for a {model.config.num_classes}-class DenseFace")
    meta = {"config": json.dumps(asdict(model.config)), "class_names": json.dumps(list(names))}
    meta["extra"] = json.dumps(extra or {})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), meta)


def read_denseface_meta(path: str | Path) -> tuple[DenseFaceConfig, tuple[str, ...]]:
    """The config and class names a weights file records (the paper's network and FER+'s eight
    classes for a file that records none), without reading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    cfg = DenseFaceConfig(**json.loads(meta["config"])) if "config" in meta else DenseFaceConfig()
    names = tuple(json.loads(meta["class_names"])) if "class_names" in meta else FERPLUS_CLASSES
    return cfg, names


def load_denseface(path: str | Path) -> DenseFace:
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"DenseFace weights not found at {p}. No pretrained DenseFace exists for PyTorch: train it on "
            f"FER+ with `python -m training.train_denseface --fer2013 fer2013.csv --ferplus fer2013new.csv "
            f"--out {p}` (see the training script's help), or set face.init=random for shape checks."
        )
    cfg, names = read_denseface_meta(p)
    model = DenseFace(cfg)
    model.load_state_dict(load_file(str(p)), strict=True)
    model.class_names = names  # type: ignore[assignment]
    return model.eval()


@dataclass
class DenseFaceOutput:
    features: np.ndarray  # float32 [N, 342]
    probs: np.ndarray  # float32 [N, 8]


class DenseFaceEmbedder:
    """Batched gray-crop -> (342-d feature, FER+ probabilities); weights loaded once."""

    model_name = "denseface_ferplus"  # how engine events label this model's own reading
    input_size = INPUT_SIZE
    class_names = FERPLUS_CLASSES

    def __init__(
        self, weights: str | Path | None = None, device: str = "cpu", random_init: bool = False
    ) -> None:
        if weights is None and not random_init:
            raise ValueError("DenseFaceEmbedder needs a weights file (or random_init=True for shape checks)")
        self.device = torch.device(device)
        if random_init:
            torch.manual_seed(0)
            self.model = DenseFace().eval()
        else:
            self.model = load_denseface(weights)  # type: ignore[arg-type]
            self.class_names = self.model.class_names
        self.model.to(self.device)
        self.feature_dim = self.model.feature_dim

    @torch.inference_mode()
    def __call__(self, gray: np.ndarray) -> DenseFaceOutput:
        if len(gray) == 0:
            n = self.model.config.num_classes
            return DenseFaceOutput(np.zeros((0, self.feature_dim), np.float32), np.zeros((0, n), np.float32))
        logits, feat = self.model(preprocess(gray).to(self.device))
        return DenseFaceOutput(feat.float().cpu().numpy(), logits.softmax(-1).float().cpu().numpy())

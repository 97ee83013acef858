"""Class tables: names, label values, train ids and colors, and the conversions between them.

The Cityscapes table below follows the official ``cityscapesscripts.helpers.labels`` (19 train
classes; every other label id maps to 255 = ignore). Scorers trained with ``p2ptools fcn train``
carry their own :class:`ClassTable`, which then replaces this one everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255


@dataclass(frozen=True)
class ClassTable:
    """A label table: class ``i`` (train id) has ``names[i]``, ``label_ids[i]`` and ``colors[i]``.

    ``label_ids`` are the values in the dataset's own label files (Cityscapes ``labelIds``); ids not
    listed map to :data:`IGNORE`.
    """

    name: str
    names: tuple[str, ...]
    label_ids: tuple[int, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.label_ids) == len(self.colors)):
            raise ValueError("names, label_ids and colors must have the same length")
        if len(set(self.colors)) != len(self.colors):
            raise ValueError("class colors must be distinct")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {"name": self.name, "names": list(self.names), "label_ids": list(self.label_ids), "colors": [list(c) for c in self.colors]}

    @classmethod
    def from_dict(cls, data: dict) -> ClassTable:
        return cls(data["name"], tuple(data["names"]), tuple(int(i) for i in data["label_ids"]), tuple(tuple(int(v) for v in c) for c in data["colors"]))

    def id_lut(self) -> np.ndarray:
        """uint8 look-up table of 256 entries: label id -> train id (255 = ignore)."""
        lut = np.full(256, IGNORE, np.uint8)
        for train_id, label_id in enumerate(self.label_ids):
            if 0 <= label_id < 256:
                lut[label_id] = train_id
        return lut

    def label_ids_to_train_ids(self, image: np.ndarray) -> np.ndarray:
        """(H, W) integer label ids -> (H, W) uint8 train ids (unknown ids -> 255).

        Negative ids (Cityscapes' license plate, -1) and ids >= 256 map to 255.
        """
        if image.ndim != 2:
            raise ValueError(f"expected an (H, W) label-id image, got shape {image.shape}")
        ids = image.astype(np.int64)
        out = np.full(ids.shape, IGNORE, np.uint8)
        valid = (ids >= 0) & (ids < 256)
        out[valid] = self.id_lut()[ids[valid]]
        return out

    def palette(self) -> np.ndarray:
        """(256, 3) uint8: train id -> color; ignore (and unused ids) black."""
        pal = np.zeros((256, 3), np.uint8)
        pal[: self.num_classes] = np.array(self.colors, np.uint8)
        return pal

    def render(self, train_ids: np.ndarray) -> np.ndarray:
        """(H, W) train ids -> (H, W, 3) uint8 colors (ignore = black)."""
        if train_ids.ndim != 2:
            raise ValueError(f"expected an (H, W) train-id image, got shape {train_ids.shape}")
        return self.palette()[train_ids.astype(np.uint8)]

    def decode_colors(self, image: np.ndarray, *, max_distance: float | None = None) -> np.ndarray:
        """(H, W, 3) RGB label image -> (H, W) train ids by nearest class color (Euclidean in RGB).

        Pixels nearer to black than to any class color (and, with ``max_distance``, pixels farther
        than that from every class color) become 255. Used for generated label maps (photo ->
        labels) and color ground truth; exact colors decode exactly.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        colors = np.array(list(self.colors) + [(0, 0, 0)], np.float32)
        flat = image.reshape(-1, 3).astype(np.float32)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, chunked to bound memory on large images
        out = np.empty(len(flat), np.uint8)
        c2 = (colors**2).sum(1)
        for start in range(0, len(flat), 1 << 18):
            x = flat[start : start + (1 << 18)]
            d = c2[None, :] - 2.0 * x @ colors.T
            idx = d.argmin(1)
            lab = np.where(idx == len(colors) - 1, IGNORE, idx).astype(np.uint8)
            if max_distance is not None:
                best = d[np.arange(len(x)), idx] + (x**2).sum(1)
                lab[best > max_distance**2] = IGNORE
            out[start : start + len(x)] = lab
        return out.reshape(image.shape[:2])


CITYSCAPES = ClassTable(
    name="cityscapes",
    names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
        "motorcycle", "bicycle",
    ),
    label_ids=(7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33),
    colors=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
)  # fmt: skip

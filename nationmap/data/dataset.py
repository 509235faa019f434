"""On-disk format of a prepared dataset, and readers for it.

    DATASET/dataset.json               config, counts, normalisation stats, class frequencies
    DATASET/index.parquet              one row per patch (scene, date, window, lat/lon, histogram, split)
    DATASET/anchors.parquet            the sampled anchors (lon, lat, code, cell)
    DATASET/report.json                per-scene status and reasons, timings
    DATASET/shards/<split>/<scene>.parquet
        patch_id: string, sar_db: binary (P*P float16, sigma0 dB, NaN = no data),
        label: binary (P*P uint8 JAXA source codes, 0 = no data; finetuning splits only)

Images are stored as raw little-endian bytes in binary columns so any Parquet reader (Ray Data
streaming to training workers, pyarrow, DuckDB) reads them without extension types; the patch
size is in ``dataset.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nationmap.errors import InputError

SPLITS = ("pretrain", "train", "val", "test")
SAR_DTYPE = np.dtype("<f2")
LABEL_DTYPE = np.dtype("u1")
SHARD_SCHEMA = pa.schema([("patch_id", pa.string()), ("sar_db", pa.binary()), ("label", pa.binary())])


def encode_sar(db: np.ndarray) -> bytes:
    """(P, P) float sigma0 dB -> float16 bytes (NaN kept as no data)."""
    return np.ascontiguousarray(db, dtype=SAR_DTYPE).tobytes()


def encode_label(codes: np.ndarray) -> bytes:
    return np.ascontiguousarray(codes, dtype=LABEL_DTYPE).tobytes()


def decode_sar(blobs, patch_size: int) -> np.ndarray:
    """Binary column values -> (N, P, P) float32 sigma0 dB (NaN = no data)."""
    return np.stack([np.frombuffer(b, dtype=SAR_DTYPE).reshape(patch_size, patch_size) for b in blobs]).astype(np.float32)


def decode_label(blobs, patch_size: int) -> np.ndarray:
    """Binary column values -> (N, P, P) uint8 JAXA source codes."""
    return np.stack([np.frombuffer(b, dtype=LABEL_DTYPE).reshape(patch_size, patch_size) for b in blobs])


def write_shard(path: Path, patch_ids: list[str], sar: list[bytes], labels: list[bytes | None]) -> None:
    """Write one shard atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"patch_id": patch_ids, "sar_db": sar, "label": labels}, schema=SHARD_SCHEMA)
    tmp = path.with_name(f".{path.name}.part")
    pq.write_table(table, tmp, compression="zstd", row_group_size=64)
    tmp.replace(path)


class PreparedDataset:
    """Read access to a prepared dataset directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta = self.root / "dataset.json"
        if not meta.exists():
            raise InputError(f"{self.root}: not a prepared dataset (no dataset.json)")
        self.meta = json.loads(meta.read_text())
        self.patch_size = int(self.meta["config"]["patch_size"])

    @property
    def index(self):
        return pq.read_table(self.root / "index.parquet").to_pandas()

    def shard_paths(self, split: str) -> list[Path]:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
        return sorted((self.root / "shards" / split).glob("*.parquet"))

    def iter_patches(self, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
        """(patch_id, sar_db (P, P) float32, label (P, P) uint8 or None) for every patch of a split."""
        for path in self.shard_paths(split):
            table = pq.read_table(path)
            ids = table["patch_id"].to_pylist()
            sar = decode_sar(table["sar_db"].to_pylist(), self.patch_size)
            labels = table["label"].to_pylist()
            for i, pid in enumerate(ids):
                label = None if labels[i] is None else decode_label([labels[i]], self.patch_size)[0]
                yield pid, sar[i], label

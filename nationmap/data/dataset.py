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
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nationmap.data.lulc import class_table_from_dict
from nationmap.errors import InputError, first_line
from nationmap.files import atomic_path

SPLITS = ("pretrain", "train", "val", "test")
SAR_DTYPE = np.dtype("<f2")
LABEL_DTYPE = np.dtype("u1")
SHARD_SCHEMA = pa.schema([("patch_id", pa.string()), ("sar_db", pa.binary()), ("label", pa.binary())])


def encode_sar(db: np.ndarray) -> bytes:
    """(P, P) float sigma0 dB -> float16 bytes (NaN kept as no data)."""
    return np.ascontiguousarray(db, dtype=SAR_DTYPE).tobytes()


def encode_label(codes: np.ndarray) -> bytes:
    return np.ascontiguousarray(codes, dtype=LABEL_DTYPE).tobytes()


def _decode(blobs, patch_size: int, dtype: np.dtype, what: str) -> np.ndarray:
    """Binary column values -> (N, P, P) arrays of ``dtype``; a value of the wrong length (a
    corrupt shard or another patch size) is an InputError, not a reshape traceback."""
    size = patch_size * patch_size * dtype.itemsize
    out = []
    for b in blobs:
        if b is None or len(b) != size:
            got = "nothing" if b is None else f"{len(b)} bytes"
            raise InputError(f"a {what} value holds {got}, not {size} ({patch_size} x {patch_size} {dtype.name}): "
                             f"corrupt shard or wrong patch size")
        out.append(np.frombuffer(b, dtype=dtype).reshape(patch_size, patch_size))
    return np.stack(out) if out else np.zeros((0, patch_size, patch_size), dtype)


def decode_sar(blobs, patch_size: int) -> np.ndarray:
    """Binary column values -> (N, P, P) float32 sigma0 dB (NaN = no data)."""
    return _decode(blobs, patch_size, SAR_DTYPE, "sar_db").astype(np.float32)


def decode_label(blobs, patch_size: int) -> np.ndarray:
    """Binary column values -> (N, P, P) uint8 JAXA source codes."""
    return _decode(blobs, patch_size, LABEL_DTYPE, "label")


def write_shard(path: Path, patch_ids: list[str], sar: list[bytes], labels: list[bytes | None]) -> None:
    """Write one shard atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"patch_id": patch_ids, "sar_db": sar, "label": labels}, schema=SHARD_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=64)


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One shard (all columns, or ``columns``); a truncated or foreign file is one InputError."""
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable dataset shard ({first_line(exc)})") from None
    except KeyError as exc:  # pyarrow names a missing requested column this way
        raise InputError(f"{path}: dataset shard without column {exc}") from None
    return table


def _check_shard(path: Path) -> None:
    """Read a shard's footer and schema (not its data): truncated files and foreign schemas fail here."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable dataset shard, truncated or corrupt ({first_line(exc)})") from None
    missing = [f.name for f in SHARD_SCHEMA if f.name not in schema.names]
    if missing:
        raise InputError(f"{path}: dataset shard without column(s) {', '.join(missing)}")


DATASET_FORMAT = "nationmap-dataset/1"


def check_meta(meta, source: Path) -> None:
    """Refuse ``dataset.json`` content that nationmap did not write: unknown format, missing or
    mistyped keys that training, evaluation and ``data info`` read."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise InputError(f"{source}: not a {DATASET_FORMAT} dataset ({what})")

    need(isinstance(meta, dict), "not a JSON object")
    need(meta.get("format") == DATASET_FORMAT, f"format is {meta.get('format')!r}")
    for key in ("config", "patches", "scenes", "normalisation", "class_frequencies", "class_table"):
        need(isinstance(meta.get(key), dict), f"{key} is missing or not an object")
    size = meta["config"].get("patch_size")
    need(isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 4096, f"config.patch_size is {size!r}")
    for split in SPLITS:
        n = meta["patches"].get(split)
        need(isinstance(n, int) and not isinstance(n, bool) and n >= 0, f"patches.{split} is {n!r}")
    for split in ("train", "pretrain"):
        stats = meta["normalisation"].get(split)
        need(stats is None or (isinstance(stats, dict) and all(
            isinstance(stats.get(k), (int, float)) and math.isfinite(stats[k]) for k in ("mean_db", "std_db"))),
            f"normalisation.{split} is not null or finite mean_db, std_db")
    try:
        class_table_from_dict(meta["class_table"], f"{source} class_table")
    except (KeyError, TypeError, ValueError) as exc:
        need(False, f"class_table is malformed: {type(exc).__name__} {first_line(exc)}")


class PreparedDataset:
    """Read access to a prepared dataset directory (metadata checked on opening, shards on listing)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta = self.root / "dataset.json"
        if not meta.exists():
            raise InputError(f"{self.root}: not a prepared dataset (no dataset.json)")
        try:
            self.meta = json.loads(meta.read_text())
        except (ValueError, OSError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise InputError(f"{meta}: not readable JSON ({first_line(exc)})") from None
        check_meta(self.meta, meta)
        self.patch_size = int(self.meta["config"]["patch_size"])
        self._checked: dict[str, list[Path]] = {}

    @property
    def index(self):
        return read_shard(self.root / "index.parquet").to_pandas()

    def shard_paths(self, split: str) -> list[Path]:
        """The split's shards, each checked readable once (footer and columns)."""
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
        if split not in self._checked:
            paths = sorted((self.root / "shards" / split).glob("*.parquet"))
            for path in paths:
                _check_shard(path)
            self._checked[split] = paths
        return list(self._checked[split])

    def iter_patches(self, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
        """(patch_id, sar_db (P, P) float32, label (P, P) uint8 or None) for every patch of a split."""
        for path in self.shard_paths(split):
            table = read_shard(path)
            try:
                sar = decode_sar(table["sar_db"].to_pylist(), self.patch_size)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            ids = table["patch_id"].to_pylist()
            labels = table["label"].to_pylist()
            for i, pid in enumerate(ids):
                label = None if labels[i] is None else decode_label([labels[i]], self.patch_size)[0]
                yield pid, sar[i], label

"""JAXA High-Resolution LULC tiles (``LC_N36E140.tif``) and their class tables.

The class table and the 14-to-9 and water remaps live in ``tables/*.toml`` so another
product version plugs in as another file. Label arrays keep the source codes (uint8,
0 = no data); :meth:`LabelScheme.remap` maps them through a 256-entry lookup table.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from nationmap.errors import InputError

TABLES_DIR = Path(__file__).parent / "tables"
DEFAULT_TABLE = "jaxa_hrlulc_v2312"

_TILE = re.compile(r"^LC_(?P<cell>[NS]\d{2}[EW]\d{3})\.tiff?$")


@dataclass(frozen=True)
class ClassInfo:
    code: int
    name: str
    color: str  # "#rrggbb"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))


@dataclass(frozen=True)
class LabelScheme:
    """A target labelling (e.g. ``lulc9``, ``water``) and its remap from the source codes.

    ``lut`` is a (256,) uint8 array: ``lut[source_code] = target_code``; unmapped source
    codes (and the source no-data code) map to ``nodata``.
    """

    name: str
    nodata: int
    classes: tuple[ClassInfo, ...]
    lut: np.ndarray

    @property
    def codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def remap(self, labels: np.ndarray) -> np.ndarray:
        """Source-code labels (any shape, uint8) to this scheme's codes (same shape, uint8)."""
        return self.lut[np.asarray(labels, dtype=np.uint8)]

    def code_index(self, ignore_index: int = 255) -> np.ndarray:
        """(256,) uint8: this scheme's code (a product's value) -> class index 0..K-1 in
        ``classes`` order, any other value -> ``ignore_index``."""
        position = np.full(256, ignore_index, dtype=np.uint8)
        for i, code in enumerate(self.codes):
            position[code] = i
        return position

    def index_lut(self, ignore_index: int = 255) -> np.ndarray:
        """(256,) uint8: source code -> class index 0..K-1 in ``classes`` order (the model's output
        channel; for ``water`` 0 = non-water, 1 = water), no data -> ``ignore_index``."""
        return self.code_index(ignore_index)[self.lut]

    def to_targets(self, source_labels: np.ndarray, ignore_index: int = 255) -> np.ndarray:
        """Source-code labels -> training targets (class indices, ``ignore_index`` for no data)."""
        return self.index_lut(ignore_index)[np.asarray(source_labels, dtype=np.uint8)]

    def remap_counts(self, source_counts: np.ndarray) -> np.ndarray:
        """Source histogram (up to 256 bins, e.g. 15) to a histogram over ``self.codes``."""
        out = np.zeros(len(self.classes), dtype=np.int64)
        index = {code: i for i, code in enumerate(self.codes)}
        for src, n in enumerate(np.asarray(source_counts)):
            target = int(self.lut[src])
            if target in index:
                out[index[target]] += int(n)
        return out


@dataclass(frozen=True)
class ClassTable:
    """The source product's classes plus its derived label schemes."""

    name: str
    nodata: int
    classes: tuple[ClassInfo, ...]
    schemes: dict

    @property
    def codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def max_code(self) -> int:
        return max(self.codes)

    def scheme(self, name: str) -> LabelScheme:
        if name not in self.schemes:
            raise InputError(f"unknown label scheme {name!r}; known: {', '.join(self.schemes)}")
        return self.schemes[name]

    def to_dict(self) -> dict:
        """JSON-ready description (stored in dataset metadata and model bundles)."""
        return {
            "name": self.name,
            "nodata": self.nodata,
            "classes": [c.__dict__ for c in self.classes],
            "schemes": {
                s.name: {
                    "nodata": s.nodata,
                    "classes": [c.__dict__ for c in s.classes],
                    "remap": [[c, int(s.lut[c])] for c in self.codes],
                }
                for s in self.schemes.values()
            },
        }


def _classes(rows) -> tuple[ClassInfo, ...]:
    return tuple(ClassInfo(int(r["code"]), str(r["name"]), str(r["color"])) for r in rows)


@lru_cache(maxsize=8)
def load_class_table(name_or_path: str | Path = DEFAULT_TABLE) -> ClassTable:
    """Load a class table by name (``tables/<name>.toml``) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TABLES_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise InputError(f"class table {name_or_path!s} not found")
    return class_table_from_dict(tomllib.loads(path.read_text()), path.name)


def class_table_from_dict(raw: dict, source: str = "class table") -> ClassTable:
    """A ClassTable from its TOML structure or ``ClassTable.to_dict()`` (dataset metadata, bundles)."""
    classes = _classes(raw["classes"])
    codes = {c.code for c in classes}
    schemes = {}
    for scheme_name, spec in raw.get("schemes", {}).items():
        lut = np.full(256, int(spec["nodata"]), dtype=np.uint8)
        targets = {int(r["code"]) for r in spec["classes"]}
        for src, dst in spec["remap"]:
            if src not in codes or dst not in targets:
                raise InputError(f"{source}: scheme {scheme_name} maps {src}->{dst}, not in the tables")
            lut[src] = dst
        schemes[scheme_name] = LabelScheme(scheme_name, int(spec["nodata"]), _classes(spec["classes"]), lut)
    return ClassTable(str(raw["name"]), int(raw["nodata"]), classes, schemes)


def lulc_tile_name(cell: str) -> str:
    return f"LC_{cell}.tif"


def parse_lulc_tile_name(path: str | Path) -> str:
    """``LC_N36E140.tif`` -> ``"N36E140"``."""
    m = _TILE.match(Path(path).name)
    if m is None:
        raise InputError(f"{Path(path).name}: not a JAXA LULC tile name (expected like LC_N36E140.tif)")
    return m["cell"]


def find_lulc_tiles(directory: str | Path) -> dict[str, Path]:
    """Map cell name -> tile path for every ``LC_*.tif`` under ``directory`` (recursive)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: LULC directory not found")
    tiles = {}
    for path in sorted(directory.rglob("LC_*.tif*")):
        if _TILE.match(path.name):
            tiles[parse_lulc_tile_name(path)] = path
    return tiles


def check_lulc_tile(path: str | Path) -> None:
    """Refuse a tile nationmap cannot read as JAXA LULC codes: unreadable, not one band, not uint8
    (codes 0..255; a wider type would be truncated into wrong classes)."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            count, dtype = src.count, src.dtypes[0]
    except RasterioError as exc:
        raise InputError(f"{path}: not a readable LULC tile ({str(exc).splitlines()[0][:200]})") from None
    if count != 1 or dtype != "uint8":
        raise InputError(f"{path}: a LULC tile holds one uint8 band of class codes, not {count} {dtype} band(s)")


def class_histogram(labels: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """Counts of source codes 0..n_bins-1 in ``labels`` (int64, shape (n_bins,))."""
    return np.bincount(np.asarray(labels, dtype=np.uint8).ravel(), minlength=256)[:n_bins].astype(np.int64)

"""Derive the `japan` region's cell list (nationmap/data/tables/japan_cells.txt).

The list is the set of 1 x 1 degree cells that hold land of Japan in the GLOBE-derived 1 km
land mask shipped by the `global-land-mask` package (pip install global-land-mask), sampled
every 0.005 degree, inside boxes that bound Japan's territory (to leave out Korea, Russia and
Taiwan). It approximates JAXA's 131-tile HRLULC index: when real LC_*.tif tiles are at hand,
`--lulc-dir` makes the `japan` region the set of tiles present instead.

    python scripts/make_japan_cells.py > nationmap/data/tables/japan_cells.txt
"""

import numpy as np
from global_land_mask import globe

# (lon_min, lat_min, lon_max, lat_max) boxes bounding Japan's islands; everything outside is
# another country (or open ocean).
JAPAN_BOXES = [
    (139.0, 41.0, 149.0, 46.0),   # Hokkaido and the southern Kurils
    (135.5, 36.0, 143.0, 41.6),   # Tohoku, Hokuriku, Kanto north
    (131.9, 33.0, 141.5, 36.9),   # Kanto, Chubu, Kinki, Chugoku, Shikoku, Oki
    (128.9, 33.0, 131.9, 34.95),  # Kyushu north, Tsushima, Iki, west Yamaguchi
    (128.3, 30.0, 132.5, 33.0),   # Kyushu south, Goto, Amakusa, Osumi islands
    (128.3, 27.0, 130.5, 30.0),   # Tokara, Amami
    (122.5, 24.0, 131.5, 27.2),   # Okinawa, Miyako, Yaeyama, Daito
    (138.5, 24.0, 143.0, 34.9),   # Izu and Ogasawara islands
    (153.5, 24.0, 154.5, 25.0),   # Minami-Torishima
]
STEP = 0.005


def main() -> None:
    cells = set()
    for lon0, lat0, lon1, lat1 in JAPAN_BOXES:
        lats = np.arange(lat0 + STEP / 2, lat1, STEP)
        lons = np.arange(lon0 + STEP / 2, lon1, STEP)
        lat_grid, lon_grid = np.meshgrid(lats, lons, indexing="ij")
        land = globe.is_land(lat_grid, lon_grid)
        for lat, lon in zip(np.floor(lat_grid[land]).astype(int), np.floor(lon_grid[land]).astype(int)):
            cells.add((lat, lon))
    print("# The `japan` region: 1 x 1 degree cells holding land of Japan (see scripts/make_japan_cells.py).")
    for lat, lon in sorted(cells):
        print(f"N{lat:02d}E{lon:03d}")


if __name__ == "__main__":
    main()

"""Render a grid of procedural rooms and people, print render times.

Usage: python benchmarks/synth_gallery.py OUT.png [--n 12] [--size 224] [--height-px 256]
Each room is shown as colour | depth | floor mask; people are composited on grey with their anchor marked.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from fgdepth.synth import render_person, render_room


def _depth_vis(depth: np.ndarray) -> np.ndarray:
    inv = 1.0 / depth
    v = (inv - inv.min()) / max(float(inv.max() - inv.min()), 1e-9)
    return cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--height-px", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    rooms = [render_room(args.seed + i, size=args.size) for i in range(args.n)]
    t_room = (time.perf_counter() - t0) / args.n
    t0 = time.perf_counter()
    people = [render_person(args.seed + i, height_px=args.height_px) for i in range(args.n)]
    t_person = (time.perf_counter() - t0) / args.n
    print(f"room   {args.size}px: {t_room:.3f} s each")
    print(f"person {args.height_px}px: {t_person:.3f} s each")

    tiles = []
    for bg in rooms:
        mask = bg.rgb[..., ::-1].copy()
        mask[bg.floor_mask] = (0.5 * mask[bg.floor_mask] + [0, 120, 0]).astype(np.uint8)
        tiles.append(np.concatenate([bg.rgb[..., ::-1], _depth_vis(bg.depth), mask], axis=1))
    cols = 2
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    room_grid = np.concatenate(
        [np.concatenate(tiles[i : i + cols], 1) for i in range(0, len(tiles), cols)], 0
    )

    cell_h = args.height_px + 16
    cell_w = room_grid.shape[1] // min(args.n, 8)
    cells = []
    for fg in people:
        a = fg.rgba[..., 3:].astype(np.float32) / 255.0
        img = (fg.rgba[..., 2::-1] * a + 150 * (1 - a)).astype(np.uint8)
        cell = np.full((cell_h, cell_w, 3), 150, np.uint8)
        h, w = min(img.shape[0], cell_h), min(img.shape[1], cell_w)
        x0 = max(0, (cell_w - img.shape[1]) // 2)
        cell[:h, x0 : x0 + min(w, cell_w - x0)] = img[:h, : min(w, cell_w - x0)]
        cv2.circle(cell, (int(x0 + fg.anchor[0]), int(fg.anchor[1])), 3, (0, 0, 255), -1)
        cells.append(cell)
    per_row = min(args.n, 8)
    while len(cells) % per_row:
        cells.append(np.full_like(cells[0], 150))
    people_grid = np.concatenate(
        [np.concatenate(cells[i : i + per_row], 1) for i in range(0, len(cells), per_row)], 0
    )
    width = max(room_grid.shape[1], people_grid.shape[1])

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0)))

    cv2.imwrite(args.out, np.concatenate([pad(room_grid), pad(people_grid)], 0))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

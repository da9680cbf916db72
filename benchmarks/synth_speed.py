"""How long the procedural world takes to render: ``--rooms`` backgrounds and ``--people`` people (mirror images
cost nothing) at ``--size`` px, through ``factory._render_world`` (the code path of ``fgdepth make-dataset``),
with each worker count in ``--workers``. The target at reference scale (100 + 100 at 224 px, 2 workers) is under a
minute.

The machine may be shared: wall times are upper bounds; the load average is printed with them, and the CPU seconds
(this process and its pool workers) divided by the worker count estimate the wall time on an idle machine.

Usage::

    python benchmarks/synth_speed.py [--rooms 100] [--people 100] [--size 224] [--workers 1,2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from common import count, counts, run

from fgdepth import factory
from fgdepth.config import FactoryConfig


def _cpu() -> float:
    """CPU seconds of this process and its finished children (pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _time(num_bg: int, num_fg: int, size: int, workers: int, seed: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of rendering the world."""
    cfg = FactoryConfig(num_bg=num_bg, num_fg=num_fg, size=size, seed=seed)
    c0, t0 = _cpu(), time.perf_counter()
    bgs, people = factory._render_world(cfg, workers)
    dt, dc = time.perf_counter() - t0, _cpu() - c0
    assert len(bgs) == num_bg and len(people) == num_fg
    return dt, dc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rooms", type=int, default=100)
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--size", type=count, default=224)
    ap.add_argument("--workers", type=counts, default=[1, 2], help="comma-separated worker counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    results = []
    for workers in args.workers:
        load = os.getloadavg()[0]
        t_rooms, c_rooms = _time(args.rooms, 0, args.size, workers, args.seed)
        t_people, c_people = _time(0, args.people, args.size, workers, args.seed)
        row = {
            "workers": workers,
            "rooms": args.rooms,
            "people": args.people,
            "size": args.size,
            "rooms_s": round(t_rooms, 2),
            "people_s": round(t_people, 2),
            "total_s": round(t_rooms + t_people, 2),
            "per_room_s": round(t_rooms / max(args.rooms, 1), 3),
            "per_person_s": round(t_people / max(args.people, 1), 3),
            "cpu_s": round(c_rooms + c_people, 2),  # / workers = the wall time on an idle machine
            "load_avg_before": round(load, 2),
        }
        results.append(row)
        print(
            f"workers={workers}: {args.rooms} rooms {t_rooms:.1f} s ({row['per_room_s']:.3f} s each), "
            f"{args.people} people {t_people:.1f} s ({row['per_person_s']:.3f} s each), "
            f"total {row['total_s']:.1f} s, {row['cpu_s']:.1f} CPU s  [load avg {load:.1f}, {os.cpu_count()} cpus]"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "cpus": os.cpu_count()}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run(main)

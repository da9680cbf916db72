"""Run the project's benchmarks and write ``benchmarks/results.md`` + ``benchmarks/results.json``.

Each benchmark is its own script (it prints its table and writes JSON); this runner calls them one after the other
on an otherwise idle machine, records the machine, and keeps every figure with the command that produced it.

    python benchmarks/run_all.py              # everything (about 10 minutes on 2 cores)
    python benchmarks/run_all.py --quick      # fewer repeats
    python benchmarks/run_all.py --only factory,train_speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cmds(tmp: Path, quick: bool) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "factory": [
            py,
            str(HERE / "factory.py"),
            "--samples",
            "12000",  # steady state needs ~12 shards per worker, also in --quick
            "--json",
            str(tmp / "factory.json"),
        ],
        "synth_speed": [py, str(HERE / "synth_speed.py"), "--json", str(tmp / "synth_speed.json")],
        "train_speed": [py, str(HERE / "train_speed.py"), "--json", str(tmp / "train_speed.json")]
        + (["--repeats", "2"] if quick else []),
        "inference": [py, str(HERE / "inference.py"), "--json", str(tmp / "inference.json")]
        + (["--repeats", "10"] if quick else []),
        "teacher": [py, str(HERE / "teacher.py"), "--json", str(tmp / "teacher.json")]
        + (["--quick"] if quick else []),
    }


def machine() -> dict[str, str]:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated subset of the benchmark names")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    previous = args.out / "results.json"
    # --only refreshes some figures and keeps the others (each keeps its own date)
    results: dict[str, dict] = {}
    if args.only and previous.is_file():
        results = json.loads(previous.read_text())["results"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cmds = _cmds(tmp, args.quick)
        for name in args.only.split(",") if args.only else list(cmds):
            cmd = cmds[name]
            shown = " ".join(["python", *(Path(c).name if c.endswith(".py") else c for c in cmd[1:])])
            shown = shown.replace(str(tmp) + "/", "")
            print(f"== {name}: {shown}", flush=True)
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.time() - t0
            print(proc.stdout[-4000:], flush=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
            jpath = tmp / f"{name}.json"
            results[name] = {
                "command": shown,
                "returncode": proc.returncode,
                "wall_s": round(wall, 1),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "output": proc.stdout.strip() or proc.stderr.strip()[-2000:],
                "data": json.loads(jpath.read_text()) if jpath.is_file() else None,
            }
    demo = Path("runs/demo/demo.json")
    if demo.is_file():
        summary = json.loads(demo.read_text())
        results["demo"] = {
            "command": "make demo",
            "returncode": 0,
            "wall_s": round(sum(summary.get("timings", {}).values()), 1),  # its stages, not the set-up
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(demo.stat().st_mtime)),
            "output": json.dumps(summary, indent=2),
            "data": summary,
        }
    sections = [
        f"## {name}\n\n`{r['command']}` ({r.get('date', '')}, exit {r.get('returncode', 0)}, {r.get('wall_s', '-')} s)"
        f"\n\n```\n{r.get('output', '')}\n```\n"
        for name, r in results.items()
    ]
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    header = "# Benchmark results\n\nWritten by `python benchmarks/run_all.py` (`make bench`).\n\n"
    header += "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + "\n\n"
    (args.out / "results.md").write_text(header + "\n".join(sections))
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()

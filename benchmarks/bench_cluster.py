#!/usr/bin/env python
"""Ray against the local executor: the same 20 short clips, the same model, one run.

    python benchmarks/bench_cluster.py            # or: make bench-cluster
    python benchmarks/bench_cluster.py --clips 20 --postgres postgresql://…/test

Each side is the user's command, timed from the shell: `policy-engine scan DIR
--executor local|ray` into a fresh PostgreSQL schema, start-up included (the process,
Ray's own start and each actor's model load). The model is ViT-B/32 with random weights
(the real architecture and cost; `.bench/model`, built once by bench_scan's helper);
the clips are 20 distinct 6 s cuts of the real clips in ../shared/media (generated
patterns where absent). Target: Ray under 1.25x the local wall time on this machine.

It also prints the per-asset costs the README's capacity table is built from: where a
scan's time goes (decode and the photosensitivity and scene checks on the host CPU,
the image model, the database and report writes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_reevaluate import add_postgres_option, postgres_schema  # noqa: E402
from bench_scan import SHARED, WORK, build_model  # noqa: E402

CLI = Path(sys.executable).parent / "policy-engine"
SECONDS = 6.0


SIDES = (
    ("local", ("--executor", "local"), "1"),
    ("ray, 2 actors x 1 CPU", ("--executor", "ray"), "1"),
    ("ray, 1 actor x 2 CPUs", ("--executor", "ray"), "2"),
)


def spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f} s over {len(values)} rounds"


def build_clips(folder: Path, count: int) -> list[Path]:
    """``count`` distinct clips (distinct content: a copy would be reused, not scanned)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((SHARED / "media").glob("*.mp4")) if (SHARED / "media").is_dir() else []
    made = []
    for i in range(count):
        path = folder / f"clip-{i:02d}.mp4"
        if not path.is_file():
            if sources:
                cut(sources[i % len(sources)], path, skip=i // len(sources) * 3)
            else:
                from policy_engine.media.synthetic import write_moving_pattern

                write_moving_pattern(path, seconds=SECONDS, size=(640, 360), seed=i)
        made.append(path)
    return made


def cut(source: Path, path: Path, *, skip: int) -> None:
    """SECONDS of ``source`` from frame ``skip`` (looped), at most 640 wide, 25 fps."""
    with av.open(str(source)) as clip:
        frames = [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]
    height, width = frames[0].shape[:2]
    scale = min(1.0, 640 / width)
    w, h = round(width * scale) // 2 * 2, round(height * scale) // 2 * 2
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for index in range(round(SECONDS * 25)):
            picture = frames[(skip + index) % len(frames)]
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(w, h)
            frame.pts, frame.time_base = index, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def run_scan(db: str, folder: Path, model: Path, reports: Path, *flags: str) -> tuple[float, list]:
    env = {**os.environ, "POLICY_ENGINE_MODEL": str(model), "POLICY_ENGINE_DEVICE": "cpu"}
    started = time.perf_counter()
    done = subprocess.run(
        [str(CLI), "--db", db, "scan", str(folder), "--reports", str(reports), "--json", *flags],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"scan {' '.join(flags)} failed ({done.returncode}):\n{done.stderr}")
    outcomes = json.loads(done.stdout)
    failed = [o["path"] for o in outcomes if o["status"] != "scanned"]
    if failed:
        raise SystemExit(f"not scanned: {failed}")
    return wall, outcomes


def scan_timings(db: str) -> list[dict]:
    from sqlalchemy import text

    from policy_engine.store.database import make_engine

    engine = make_engine(db)
    with engine.connect() as c:
        rows = c.execute(text("SELECT timings FROM scans WHERE status = 'completed'")).all()
    engine.dispose()
    return [r[0] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    add_postgres_option(parser)
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("needs PostgreSQL: --postgres URL or POLICY_ENGINE_TEST_POSTGRES_URL")
    model = build_model(WORK / "model")
    clips = build_clips(WORK / "cluster-clips", args.clips)
    folder = clips[0].parent
    print(f"{len(clips)} clips of {SECONDS:g} s; ViT-B/32 (random weights); {os.cpu_count()} CPUs")
    from sqlalchemy import text

    schemas = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            warm, admin = postgres_schema(args.postgres)
            schemas.append(admin)
            one = Path(scratch) / "one"
            one.mkdir()
            shutil.copy(clips[0], one / clips[0].name)
            run_scan(warm, one, model, Path(scratch) / "r0")  # the converted-model cache, warm
            walls: dict[str, list[float]] = {}
            costs = {}
            for round_ in range(args.rounds):  # interleaved: drift hits every side alike
                for label, flags, cpus in SIDES:
                    db, admin = postgres_schema(args.postgres)
                    schemas.append(admin)
                    os.environ["POLICY_ENGINE_RAY_CPUS_PER_WORKER"] = cpus
                    where = Path(scratch) / f"{label}-{round_}"
                    wall, outcomes = run_scan(db, folder, model, where, *flags)
                    walls.setdefault(label, []).append(wall)
                    costs.setdefault(label, (outcomes, scan_timings(db)))
                    print(f"round {round_ + 1}: {label:22s} {wall:6.1f} s", flush=True)
    finally:
        for engine, schema in schemas:
            with engine.begin() as connection:  # type: ignore[attr-defined]
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            engine.dispose()  # type: ignore[attr-defined]
    base = statistics.median(walls["local"])
    print(f"local: median {base:.1f} s for {len(clips)} clips ({spread(walls['local'])})")
    for label, times in walls.items():
        if label != "local":
            ratio = statistics.median(times) / base
            verdict = "met" if ratio < 1.25 else "MISSED"
            print(
                f"{label}: median {statistics.median(times):.1f} s ({spread(times)});"
                f" ratio to local {ratio:.3f} (target < 1.25: {verdict})"
            )
    outcomes, timings = costs["local"]
    per_asset = statistics.mean(o["seconds"] for o in outcomes)
    model_s = statistics.mean(t["model_s"] for t in timings)
    other_s = statistics.mean(t["other_s"] for t in timings)
    print(
        f"local, per asset ({SECONDS:g} s clip, 2 fps): {per_asset:.2f} s in all ="
        f" decode and checks on the CPU {other_s:.2f} s + image model {model_s:.2f} s"
        f" + database and report {per_asset - other_s - model_s:.2f} s"
    )


if __name__ == "__main__":
    main()

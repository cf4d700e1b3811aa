#!/usr/bin/env python
"""Small cones beside heavy requests: does the service keep answering 6′ cones while clients
repeat the largest request its limits admit?

    .venv/bin/python bench/bench_heavy.py [--rows 2000000] [--patch-rows 1240000] [--clients 32]
        [--heavy-clients 2] [--heavy-format ecsv] [--duration 30] [--rounds 2] [--workers 2]
        [--threads N] [--heavy-radius DEG] [--url STORE_URL] [--keep]

The store (PostgreSQL, a uniquely named database, served as the read-only role of
docs/service.md) holds one catalog ``gaia_dr3``: ``--rows`` Gaia-like rows uniform on the sky
plus ``--patch-rows`` in a 3°-radius patch around (150°, 20°) — 1.24 M rows there is Gaia DR3's
mean density (44 k/deg², ~138 k rows in a 1° cone). ``--clients`` closed-loop keep-alive clients
ask 6′ SCS cones at random centres on the sphere; ``--heavy-clients`` more ask 1° cones
(``/v1/cone``, ``--heavy-format``, epoch 2030) at random centres within 2° of the patch's
centre, each sending its next request when the previous answer is complete. Each round measures
``--duration`` s of the small cones alone, then ``--duration`` s with the heavy clients, on the
same server. Reported per phase: small-cone throughput, p50/p99 latency, errors; the heavy
requests' count, latency, rows and bytes.

Targets (2 cores): with two heavy clients, small cones keep >= 50 % of their throughput alone and
p99 < 100 ms, every heavy answer complete (the limits admit a 1° cone at Gaia's mean density).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_service import BenchStore, pct, random_centres, start_server, stop_server  # noqa: E402
from bench_store import code_version, command_line, gaia_like_sky, log, machine_info  # noqa: E402

OUT = HERE / "out" / "heavy.md"
PATCH = (150.0, 20.0, 3.0)     # centre ra, dec and radius of the dense patch, deg
TARGETS = {"keep": 0.5, "p99_ms": 100.0}


def patch_sky(n: int, seed: int = 11):
    """``n`` Gaia-like rows uniform in the patch (the astrometry of :func:`gaia_like_sky`)."""
    t = gaia_like_sky(n, seed=seed, fast=0)
    rng = np.random.default_rng(seed)
    ra0, dec0, rad = np.radians(PATCH)
    r = np.arccos(1.0 - rng.uniform(0.0, 1.0, n) * (1.0 - np.cos(rad)))
    pa = rng.uniform(0.0, 2.0 * np.pi, n)
    dec = np.arcsin(np.sin(dec0) * np.cos(r) + np.cos(dec0) * np.sin(r) * np.cos(pa))
    ra = ra0 + np.arctan2(np.sin(pa) * np.sin(r) * np.cos(dec0), np.cos(r) - np.sin(dec0) * np.sin(dec))
    t["ra"], t["dec"] = np.degrees(ra) % 360.0, np.degrees(dec)
    return t


class HeavyStore(BenchStore):
    """The service benchmark's store with the dense patch added to ``gaia_dr3``."""

    def sky(self):
        from astropy.table import vstack
        return vstack([gaia_like_sky(self.args.rows), patch_sky(self.args.patch_rows)])


async def client(port, paths, stop_at, out, end: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop_at:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = next((int(line[15:]) for line in head.split(b"\r\n")
                               if line[:15].lower() == b"content-length:"), None)
                body = await reader.readexactly(length) if length is not None else b""
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out["errors"].append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if status == 200 and body.endswith(end):
                out["lat"].append(time.perf_counter() - t0)
                out["bytes"] += len(body)
                out["rows"] += body.count(b"\n")
            else:
                out["errors"].append(f"HTTP {status}: {body[:200]!r}")
    finally:
        writer.close()


async def phase(port, small, heavy, n_small, n_heavy, duration):
    stop_at = time.perf_counter() + duration
    outs = {k: {"lat": [], "errors": [], "bytes": 0, "rows": 0} for k in ("small", "heavy")}
    step = len(small) // n_small
    tasks = [client(port, small[k * step:] + small[:k * step], stop_at, outs["small"], b"</VOTABLE>\n")
             for k in range(n_small)]
    tasks += [client(port, heavy[k::max(n_heavy, 1)], stop_at, outs["heavy"], b"\n") for k in range(n_heavy)]
    t0 = time.perf_counter()
    await asyncio.gather(*tasks)
    for o in outs.values():
        o["wall"] = time.perf_counter() - t0
    return outs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--patch-rows", type=int, default=1_240_000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--heavy-clients", type=int, default=2)
    p.add_argument("--heavy-format", choices=("ecsv", "csv", "json", "votable"), default="ecsv")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--heavy-radius", type=float, default=None, help="astrodb serve --heavy-radius (180: no "
                   "heavy lane, every request in the worker's threads)")
    p.add_argument("--pg", default=os.environ.get("ASTRODB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--url", help="serve this existing store (catalog gaia_dr3 with the patch) instead")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    (HERE / "out").mkdir(exist_ok=True)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    t_start, load_before = time.time(), os.getloadavg()
    bs, info, proc = HeavyStore(args), {}, None
    rounds = []
    try:
        url = args.url or None
        if url is None:
            url, info = bs.build()
        proc, port = start_server(url, args)
        log(f"server up on port {port}")
        ras, decs = random_centres(200_000, 7)
        small = [f"/scs/gaia_dr3?RA={a:.6f}&DEC={d:.6f}&SR=0.1" for a, d in zip(ras, decs)]
        rng = np.random.default_rng(3)
        r, pa = 2.0 * np.sqrt(rng.uniform(0, 1, 1000)), rng.uniform(0, 2 * np.pi, 1000)
        hra = PATCH[0] + r * np.sin(pa) / np.cos(np.radians(PATCH[1]))
        hdec = PATCH[1] + r * np.cos(pa)
        heavy = [f"/v1/cone?catalog=gaia_dr3&ra={a:.6f}&dec={d:.6f}&radius=1&epoch=2030&format={args.heavy_format}"
                 for a, d in zip(hra, hdec)]
        asyncio.run(phase(port, small, heavy, args.clients, 1, 5.0))     # warm-up, both kinds
        for k in range(args.rounds):
            alone = asyncio.run(phase(port, small, heavy, args.clients, 0, args.duration))
            mixed = asyncio.run(phase(port, small, heavy, args.clients, args.heavy_clients, args.duration))
            rounds.append((alone, mixed))
            log(f"round {k + 1}: alone {len(alone['small']['lat']) / alone['small']['wall']:.0f} req/s, with heavy "
                f"{len(mixed['small']['lat']) / mixed['small']['wall']:.0f} req/s "
                f"(p99 {pct(mixed['small']['lat'], 99):.1f} ms), heavy {len(mixed['heavy']['lat'])} done")
    finally:
        stop_server(proc)
        if not args.url:
            bs.cleanup()

    m = machine_info()
    yes = {True: "yes", False: "**no**"}
    cmd = command_line("bench/bench_heavy.py", argv if argv is not None else sys.argv[1:],
                       {"--url": "URL", "--pg": "URL"})
    md = ["## HTTP service: small cones beside heavy requests (bench/bench_heavy.py)", "",
          f"- Command: `{cmd}` (in the repository root)",
          f"- Measured on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d}; wall time "
          f"{(time.time() - t_start) / 60:.1f} min; {code_version()}",
          f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram']}, Linux {m['kernel']}; Python "
          f"{platform.python_version()}; load average before {load_before[0]:.2f}",
          f"- Store: `gaia_dr3` = {args.rows:,} rows uniform on the sky + {args.patch_rows:,} in a 3° patch "
          "(Gaia DR3's mean density); served as the read-only role; "
          f"`astrodb serve --workers {args.workers}{'' if args.threads is None else f' --threads {args.threads}'}"
          f"{'' if args.heavy_radius is None else f' --heavy-radius {args.heavy_radius:g}'}`",
          f"- Small: {args.clients} clients, 6′ SCS cones at random centres. Heavy: {args.heavy_clients} clients, "
          f"1° `/v1/cone` at epoch 2030 in the patch, format {args.heavy_format}. {args.duration:g} s per phase.",
          "",
          "| Round | small alone req/s (p99 ms) | small with heavy req/s (p50 / p99 ms) | kept | heavy done "
          "(p50 / max s, lines, MB each) | errors | Met |",
          "|---|---:|---:|---:|---|---:|---|"]
    for k, (alone, mixed) in enumerate(rounds, 1):
        a = len(alone["small"]["lat"]) / alone["small"]["wall"]
        s, h = mixed["small"], mixed["heavy"]
        b = len(s["lat"]) / s["wall"]
        nh = len(h["lat"])
        p99 = pct(s["lat"], 99)
        errors = len(alone["small"]["errors"]) + len(s["errors"]) + len(h["errors"])
        met = b / a >= TARGETS["keep"] and p99 < TARGETS["p99_ms"] and errors == 0 and nh > 0
        heavy = (f"{nh} ({pct(h['lat'], 50) / 1e3:.2f} / {max(h['lat']):.2f} s, {h['rows'] / nh:,.0f}, "
                 f"{h['bytes'] / nh / 1e6:.1f})" if nh else "0")
        md.append(f"| {k} | {a:,.0f} ({pct(alone['small']['lat'], 99):.1f}) | {b:,.0f} ({pct(s['lat'], 50):.1f} / "
                  f"{p99:.1f}) | {b / a:.0%} | {heavy} | {errors} | {yes[met]} |")
        errs = alone["small"]["errors"] + s["errors"] + h["errors"]
        if errs:
            md.append(f"|  | first errors: {'; '.join(sorted(set(e[:120] for e in errs))[:3])} | | | | | |")
    text = "\n".join(md) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

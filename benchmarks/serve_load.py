"""Load test of `fastsam serve` on loopback: prompt latency under concurrency, and health checks during a long
all-instance pass.

    python benchmarks/serve_load.py                       # FastSAM-s fixture, dogs.jpg, 200 prompts, 8 clients
    python benchmarks/serve_load.py --requests 400 --clients 16 --slow-image sa_8776.jpg

The server runs in its own process (bound to 127.0.0.1 only) so that the clients do not share its GIL.
1. One image is uploaded (the all-instance pass) and uploaded again (cached).
2. ``--requests`` prompt requests (alternately a random foreground point and a random box, RLE answers) come
   from ``--clients`` concurrent clients on that cached image: p50 / p99 latency, throughput, errors; then a
   quarter as many from one client (the latency a click sees when nobody else is using the server).
3. A second, larger image is uploaded (a long pass) while one client polls /v1/health every
   ``--health-interval`` seconds and another keeps prompting the cached image: their latencies during the pass.
Prints a markdown table and writes JSON (default out/serve_load.json). Needs ../shared/fixtures.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

SHARED = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
HOST = "127.0.0.1"  # loopback only


def serve(args: argparse.Namespace) -> None:
    """Child process: the server."""
    import uvicorn

    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model
    from fastsam.serve import ServeSettings, create_app
    from fastsam.serve.protocol import uvicorn_options

    predictor = Predictor(load_model(args.model, progress=False), imgsz=args.imgsz, conf=args.conf)
    settings = ServeSettings(model_name=str(args.model))
    # As `fastsam serve` runs it: with the request-head timeout protocol.
    uvicorn.run(create_app(predictor, settings), host=HOST, port=args.serve, log_level="warning",
                **uvicorn_options(settings))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(latencies_s: list[float]) -> dict:
    ms = [v * 1000 for v in latencies_s]
    if not ms:
        return {"count": 0}
    return {"count": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms),
            "mean_ms": statistics.fmean(ms)}


async def upload(client, path: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = await client.post("/v1/images", content=path.read_bytes(), headers={"Content-Type": content_type})
    response.raise_for_status()
    return response.json(), time.perf_counter() - start


def prompt_bodies(count: int, width: int, height: int, seed: int = 0) -> list[dict]:
    """Alternately one random foreground point and one random box (at least 8 px a side)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bodies = []
    for k in range(count):
        if k % 2 == 0:
            bodies.append({"points": [[int(rng.integers(0, width)), int(rng.integers(0, height))]]})
        else:
            x1, y1 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
            x2, y2 = int(rng.integers(x1 + 8, width + 1)), int(rng.integers(y1 + 8, height + 1))
            bodies.append({"boxes": [[x1, y1, x2, y2]]})
    return bodies


async def prompt_load(client, image_id: str, bodies: list[dict], clients: int) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: dict[str, list[float]] = {"point": [], "box": []}
    errors: list[str] = []

    async def one_client() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            response = await client.post(f"/v1/images/{image_id}/prompt", json=body)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
            latencies["point" if "points" in body else "box"].append(elapsed)

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    wall = time.perf_counter() - start
    everything = latencies["point"] + latencies["box"]
    return {"requests": len(bodies), "clients": clients, "errors": len(errors), "error_samples": errors[:5],
            "wall_s": wall, "requests_per_s": len(bodies) / wall, "all": summary(everything),
            "point": summary(latencies["point"]), "box": summary(latencies["box"])}


async def during_long_pass(client, image_id: str, slow_image: Path, bodies: list[dict], interval: float) -> dict:
    health, prompts, errors = [], [], 0
    task = asyncio.create_task(upload(client, slow_image))

    async def poll_health() -> None:
        nonlocal errors
        while not task.done():
            start = time.perf_counter()
            response = await client.get("/v1/health")
            if response.status_code == 200 and response.json()["queue"]["running"] == 1:
                health.append(time.perf_counter() - start)
            elif response.status_code != 200:
                errors += 1
            await asyncio.sleep(interval)

    async def keep_prompting() -> None:
        nonlocal errors
        k = 0
        while not task.done():
            start = time.perf_counter()
            response = await client.post(f"/v1/images/{image_id}/prompt", json=bodies[k % len(bodies)])
            if not task.done():
                prompts.append(time.perf_counter() - start)
            errors += response.status_code != 200
            k += 1
            await asyncio.sleep(interval)

    await asyncio.gather(poll_health(), keep_prompting())
    info, seconds = await task
    return {"image": slow_image.name, "size": [info["height"], info["width"]], "instances": info["instances"],
            "pass_s": info["seconds"], "upload_s": seconds, "errors": errors,
            "health_during_pass": summary(health), "prompts_during_pass": summary(prompts)}


async def drive(args: argparse.Namespace, base_url: str) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
        first, first_s = await upload(client, args.image)
        again, again_s = await upload(client, args.image)
        bodies = prompt_bodies(args.requests, first["width"], first["height"])
        await prompt_load(client, first["image_id"], bodies[: args.clients], args.clients)  # warm-up
        load = await prompt_load(client, first["image_id"], bodies, args.clients)
        single = await prompt_load(client, first["image_id"], bodies[: max(1, args.requests // 4)], 1)
        slow = await during_long_pass(client, first["image_id"], args.slow_image, bodies, args.health_interval)
        model = (await client.get("/v1/model")).json()
    return {"image": args.image.name, "size": [first["height"], first["width"]], "instances": first["instances"],
            "first_upload_s": first_s, "pass_s": first["seconds"], "cached_upload_s": again_s,
            "cached_reused": again["reused"], "load": load, "one_client": single, "long_pass": slow,
            "model": {k: model[k] for k in ("name", "imgsz", "conf", "iou", "max_det", "retina", "device")}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_ready(base_url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{base_url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit("the server did not start in time")


def report(result: dict) -> None:
    load, single, slow = result["load"], result["one_client"], result["long_pass"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model {result['model']}\n")
    print(f"image {result['image']} {result['size'][1]}x{result['size'][0]}: {result['instances']} instances, "
          f"first upload {result['first_upload_s']:.2f} s (pass {result['pass_s']:.2f} s), cached re-upload "
          f"{result['cached_upload_s'] * 1000:.0f} ms\n")
    print("| phase | requests | errors | p50 | p99 | max | throughput |")
    print("|---|---|---|---|---|---|---|")
    for name, part in (("prompts (all)", load["all"]), ("  points", load["point"]), ("  boxes", load["box"])):
        rate = f"{load['requests_per_s']:.0f} req/s" if name == "prompts (all)" else ""
        errors = load["errors"] if name == "prompts (all)" else ""
        print(f"| {name}, {load['clients']} clients | {part['count']} | {errors} | {part['p50_ms']:.1f} ms | "
              f"{part['p99_ms']:.1f} ms | {part['max_ms']:.1f} ms | {rate} |")
    part = single["all"]
    print(f"| prompts, 1 client (a click's latency) | {part['count']} | {single['errors']} | {part['p50_ms']:.1f} ms | "
          f"{part['p99_ms']:.1f} ms | {part['max_ms']:.1f} ms | {single['requests_per_s']:.0f} req/s |")
    for name, part in (("health during long pass", slow["health_during_pass"]),
                       ("prompts during long pass", slow["prompts_during_pass"])):
        if part["count"]:
            print(f"| {name} | {part['count']} | {slow['errors']} | {part['p50_ms']:.1f} ms | {part['p99_ms']:.1f} ms "
                  f"| {part['max_ms']:.1f} ms | |")
        else:
            print(f"| {name} | 0 | {slow['errors']} | | | | |")
    print(f"\nlong pass: {slow['image']} {slow['size'][1]}x{slow['size'][0]}, {slow['instances']} instances, "
          f"{slow['pass_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=FIXTURES / "fastsam-s-parity.pt")
    parser.add_argument("--image", type=Path, default=FIXTURES / "images" / "dogs.jpg")
    parser.add_argument("--slow-image", type=Path, default=FIXTURES / "images" / "sa_8776.jpg",
                        help="image uploaded for the long pass (a different, larger one)")
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--conf", type=float, default=0.4)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--health-interval", type=float, default=0.05, help="seconds between health checks")
    parser.add_argument("--json", type=Path, default=REPO / "out" / "serve_load.json")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # child process: serve on this port
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    for path in (args.model, args.image, args.slow_image):
        if not path.is_file():
            sys.exit(f"{path} not found (fixtures in {FIXTURES}; set FASTSAM_SHARED or pass --model/--image)")
    if args.requests < 1 or args.clients < 1:
        sys.exit("--requests and --clients must be positive")

    port = _free_port()
    base_url = f"http://{HOST}:{port}"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--model", str(args.model),
                               "--imgsz", str(args.imgsz), "--conf", str(args.conf)])
    try:
        _wait_ready(base_url, server)
        result = asyncio.run(drive(args, base_url))
    finally:
        server.terminate()
        server.wait(30)
    result.update(cores=os.cpu_count(), requests=args.requests, clients=args.clients)
    report(result)
    write_json(args.json, result)
    errors = result["load"]["errors"] + result["one_client"]["errors"] + result["long_pass"]["errors"]
    if errors or not result["long_pass"]["health_during_pass"]["count"]:
        sys.exit("errors, or no health check answered during the long pass")


if __name__ == "__main__":
    main()

"""Download throughput: ``runtime.hub.download.download_files`` against ``huggingface_hub.hf_hub_download``.

    .venv/bin/python benchmarks/download_speed.py [--mib 1024] [--rounds 3] [--dir /dev/shm]

Writes a file of random bytes (1 GiB by default) into a temporary folder, serves it from the fake
hub (tests/hub_server.py, run as a separate process so that the server does not share this
process's GIL), and downloads it into a fresh Hugging Face cache with each client in turn, rounds
interleaved, after one untimed download each. Each download is checked (size; sha256 is checked by ours as part of the work) and
deleted before the next. Prints MB/s for every round and the ratio of the best rounds (noise on a
shared machine only ever slows a run). Everything it wrote is deleted at the end. Not a test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPO = "bench/model"
NAME = "model-F16.gguf"


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = 16 << 20
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def start_server(path: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hub_server.py"), "--repo", REPO, str(path)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the fake hub did not start")
    return proc, json.loads(line)["url"]


def run_hf(cache: Path) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(REPO, NAME, cache_dir=str(cache)))


def run_ours(cache: Path, size: int, sha256: str) -> Path:
    from runtime.hub.download import download_files
    from runtime.hub.types import RemoteFile

    os.environ["HF_HUB_CACHE"] = str(cache)
    return download_files(REPO, [RemoteFile(NAME, size, sha256)], revision="main", token=False)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="downloads per client (default 3)")
    parser.add_argument("--dir", default=None, help="where the file and the caches go (default: the temp folder; "
                                                    "/dev/shm takes the disk out of the figures)")
    args = parser.parse_args()
    size = args.mib << 20

    work = Path(tempfile.mkdtemp(prefix="download-speed-", dir=args.dir))
    server = None
    try:
        source = work / NAME
        print(f"writing {args.mib} MiB of random bytes to {source} ...", flush=True)
        sha256 = make_file(source, size)
        server, url = start_server(source)
        os.environ["HF_ENDPOINT"] = url
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ["HF_HUB_DISABLE_XET"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # no tqdm bar drawing for either client
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        from huggingface_hub import constants

        constants.ENDPOINT = url
        constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
        constants.HF_HUB_OFFLINE = False
        print(f"fake hub at {url} (separate process); files in {work}; CPU: {os.cpu_count()} cores", flush=True)
        import runtime.hub.download  # noqa: F401 - imports outside the timings
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        get_hf_file_metadata(hf_hub_url(REPO, NAME), token=False)  # both clients share this HTTP session: warm it

        results: dict[str, list[float]] = {"hf_hub_download": [], "download_files": []}
        for name in results:  # one untimed download each: a fresh process's first one pays for its heap
            cache = work / f"warm-up-{name}"
            run_hf(cache) if name == "hf_hub_download" else run_ours(cache, size, sha256)
            shutil.rmtree(cache)
        for round_no in range(1, args.rounds + 1):
            order = list(results) if round_no % 2 else list(reversed(results))  # neither always goes first
            for name in order:
                cache = work / f"cache-{name}-{round_no}"
                os.sync()
                began, cpu = time.perf_counter(), time.process_time()
                path = run_hf(cache) if name == "hf_hub_download" else run_ours(cache, size, sha256)
                seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
                if path.stat().st_size != size:
                    raise SystemExit(f"{name} produced {path.stat().st_size} bytes, expected {size}")
                shutil.rmtree(cache)
                rate = size / seconds / 1e6
                results[name].append(rate)
                print(f"round {round_no}  {name:<16} {seconds:6.2f} s  {rate:7.1f} MB/s  "
                      f"(client CPU {cpu:.2f} s)", flush=True)

        best_hf, best_ours = max(results["hf_hub_download"]), max(results["download_files"])
        print()
        print(f"best of {args.rounds}: hf_hub_download {best_hf:.1f} MB/s, download_files {best_ours:.1f} MB/s "
              f"(resumable, sha256-verified): ratio {best_ours / best_hf:.3f}")
        ratios = sorted(o / h for o, h in zip(results["download_files"], results["hf_hub_download"]))
        print(f"per-round ratios: {', '.join(f'{r:.3f}' for r in ratios)} (median {ratios[len(ratios) // 2]:.3f})")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

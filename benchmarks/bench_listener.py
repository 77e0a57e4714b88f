"""DICOM listener throughput against dcmtk ``storescp`` on loopback, 1 and 4 concurrent associations.

The same 1,000 MR instances (168 x 168 x 16 bit, ~57 KB each) are pushed with dcmtk ``storescu``
(``TCP_NODELAY=1``) to (a) ``storescp`` writing every object to disk (no fsync) and (b) our listener
(``python -m tests.support.listener_server``) with the service's durability defaults: every
instance is checked, then synced to the intake journal before its success response, its file and
index row follow on the materialiser thread (``JOURNAL_MB=256``), held back while the push goes on
(the push, 57 MB, is within the default 64 MiB hold-back: ``JOURNAL_DEFER_MB``). Each association
is served by its own thread. The push starts when the listener prints READY. For comparison, the
same listener with ``journal_defer_mb=0`` (files and rows
written during the push, as in a push larger than the hold-back), with ``journal_mb=0`` (each file
and its directory fsynced, then the index row committed, before the response) and with
``fsync=false`` (nothing synced). For 4 associations, 4 storescu processes push 250 instances each
at the same time. Reported: instances/s and MB/s, our/storescp ratios (target
>= 0.5x for the durable default), our 4-association over 1-association ratio (target >= 1x), the
server CPU per instance and the durability costs measured in-process on the same disk (where the
time goes). Medians of ``REPEATS`` runs, the variants interleaved so that load changes hit all alike.

Every run's output (storescp's files, our instance files) is kept until the end: on this disk (ext4
without a journal) creating files right after a thousand were deleted is slower (the inode allocator
skips recently freed inodes), which penalised whichever server ran next (storescp's CPU per instance
was seen to double).

A second baseline, ``storescp durable``: storescp made durable with dcmtk's own means (see
:data:`STORESCP_DURABLE_ARGS`: each file ``fdatasync``-ed by a synchronous reception command before
the response). It shows what durability costs a dcmtk server; the target compares with the plain
storescp above, which syncs nothing.

Note on the baseline: storescp and storescu exchange one small message per instance and wait for each
other; when the scheduler puts both on the same core storescp is much faster (measured here with
``taskset``: 4,800-5,600 instances/s on one core, 3,000-3,600 on two), so its figure (and every ratio)
moves between runs with where the scheduler placed it. For one association the benchmark therefore
also runs storescp with both placements fixed (``taskset``: storescp and storescu on CPU 0; storescp
on CPU 1, storescu on CPU 0) and reports our ratio against each. Our listener is left to the
scheduler: it does best on a core of its own (it waits for its sync while storescu works; sharing
one core with storescu measured 1,290-1,400 instead of 1,810-1,920 instances/s here).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from benchmarks.runner import Measurement, register

N_INSTANCES = 1000
ASSOCIATIONS = 4
REPEATS = 3
SIDE = 168
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def dcmtk_tool(name: str) -> str:
    """Path of a dcmtk program (storescu, storescp), or "" when there is none.

    Python console scripts are skipped: pynetdicom installs some of the same names in every virtualenv
    that has it (with a virtualenv's ``bin`` first on PATH, ``storescu`` was pynetdicom's, and the push failed).
    """
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which(name, path=folder) if folder else None
        if path is not None:
            with open(path, "rb") as handle:
                first = handle.readline(256)
            if not (first.startswith(b"#!") and b"python" in first):
                return path
    return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mr_instance(number: int, study: str, series: str, rng: np.random.Generator) -> Dataset:
    """Instance ``number`` (from 1) of the benchmark's MR series: 168 x 168 x 16 bit, ~57 KB as Part 10."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "MR"
    ds.SeriesDescription, ds.InstanceNumber = "benchmark", number
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, float(number - 1)], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [1, 1], 1
    ds.Rows = ds.Columns = SIDE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4000, (SIDE, SIDE), dtype=np.uint16).tobytes()
    return ds


def write_instances(directory: Path) -> list[Path]:
    """1,000 synthetic MR instances (one series) of ~57 KB each."""
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(N_INSTANCES):
        ds = mr_instance(i + 1, study, series, rng)
        path = directory / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc), in s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _on_cpu(cpu: int | None) -> list[str]:
    """Command prefix running a program on one CPU (``taskset``), or none for ``None``."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def push(port: int, called_ae: str, groups: list[Path], cpu: int | None = None) -> float:
    """Seconds for ``len(groups)`` concurrent storescu processes (on ``cpu`` if given) to send their directories."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*_on_cpu(cpu), dcmtk_tool("storescu"), "-aec", called_ae, "+sd", "127.0.0.1", str(port), str(group)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for group in groups
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - started


def timed_push(
    server: subprocess.Popen[str] | subprocess.Popen[bytes],
    port: int,
    called_ae: str,
    groups: list[Path],
    client_cpu: int | None = None,
) -> tuple[float, float]:
    """Push ``groups`` to a started server, then stop it: (wall s, server CPU s during the push)."""
    try:
        cpu = cpu_seconds(server.pid)
        seconds = push(port, called_ae, groups, client_cpu)
        return seconds, cpu_seconds(server.pid) - cpu
    finally:
        server.terminate()
        server.wait(30)


#: storescp options that make each received file durable before its response: dcmtk runs the
#: reception command synchronously (``-xs``) before it answers the C-STORE (checked: a command
#: sleeping 50 ms makes every instance take 50 ms), here coreutils' ``sync --data`` on the new file
#: (its ``fdatasync``). A fork and exec per instance: this is what dcmtk itself offers for
#: durability, not the fastest a durable C server could be.
STORESCP_DURABLE_ARGS = ("-xs", "-xcr", "sync --data #p/#f")


def run_storescp(
    work: Path,
    groups: list[Path],
    placement: tuple[int, int] | None = None,
    extra_args: tuple[str, ...] = (),
) -> tuple[float, float]:
    """One timed push to a fresh storescp writing into ``work/out``: (wall s, server CPU s).

    ``placement``: (storescp's CPU, storescu's CPU) with ``taskset``; None lets the scheduler place both.
    ``extra_args``: further storescp options (e.g. :data:`STORESCP_DURABLE_ARGS`). The CPU is
    storescp's own (not that of the commands it runs).
    """
    out = work / f"storescp-out-{uuid.uuid4().hex[:8]}"  # kept until the end (module doc)
    out.mkdir()
    port = _free_port()
    server_cpu, client_cpu = placement if placement is not None else (None, None)
    server = subprocess.Popen(
        [*_on_cpu(server_cpu), dcmtk_tool("storescp"), *extra_args, "-od", str(out), "-aet", "BENCH", str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
    except RuntimeError:
        server.terminate()
        server.wait(30)
        raise
    seconds, cpu = timed_push(server, port, "BENCH", groups, client_cpu)
    if len(list(out.iterdir())) != N_INSTANCES:
        raise RuntimeError("storescp did not store every instance")
    return seconds, cpu


#: Placement-controlled storescp baselines (1 association): name -> (storescp's CPU, storescu's CPU).
PLACEMENTS: dict[str, tuple[int, int]] = {"storescp-one-core": (0, 0), "storescp-two-cores": (1, 0)}
PLACEMENT_TITLES = {
    "storescp-one-core": "storescp and storescu on one core",
    "storescp-two-cores": "storescp and storescu on two cores",
}


def placements_available() -> bool:
    """True where storescp's placement can be controlled (``taskset`` and at least 2 CPUs)."""
    return (
        shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2 and {0, 1} <= os.sched_getaffinity(0)
    )


#: Listener variants: name -> ``--set`` values.
VARIANTS: dict[str, tuple[str, ...]] = {
    "ours": (),
    "ours-no-holdback": ("journal_defer_mb=0",),
    "ours-file-fsync": ("journal_mb=0",),
    "ours-nofsync": ("fsync=false",),
}


def run_listener(work: Path, groups: list[Path], settings: tuple[str, ...]) -> tuple[float, float]:
    """One timed push to a fresh listener (new store root: every instance is new work): (wall s, CPU s).

    The CPU is the listener process's (its materialiser thread included); the journal is prepared
    (zero-filled) at start, before the timed push.
    """
    root = work / f"listener-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.listener_server",
            "--root",
            str(root),
            "--port",
            str(port),
            "--handoff-log",
            str(work / "handoffs.jsonl"),
            "--quiet-period-s",
            "600",
            "--set",
            f"max_associations={ASSOCIATIONS + 2}",
            *(item for value in settings for item in ("--set", value)),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    if not server.stdout.readline().startswith("READY"):
        server.terminate()
        server.wait(30)
        raise RuntimeError("listener did not start")
    seconds, cpu = timed_push(server, port, "ONCOHABITAT", groups)
    stored = len(list((root / "instances").rglob("*.dcm")))
    shutil.rmtree(root / "journal", ignore_errors=True)  # 8 large files; the instances stay (module doc)
    if stored != N_INSTANCES:
        raise RuntimeError(f"listener stored {stored} of {N_INSTANCES} instances")
    return seconds, cpu


def durability_cost_ms(work: Path, size: int) -> tuple[float, float, float]:
    """Per-instance ms of (temp file write + fsync + rename + directory fsync), of one
    ``synchronous=FULL`` index commit and of one append + ``fdatasync`` to a pre-written file (what
    the intake journal does), on the benchmark's file system."""
    directory = work / "fsync-probe"
    directory.mkdir(exist_ok=True)
    data = os.urandom(size)
    n = 200
    started = time.perf_counter()
    for i in range(n):
        temp = directory / f"{i}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(temp, directory / f"{i}.dcm")
        dir_fd = os.open(directory, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
    file_ms = (time.perf_counter() - started) / n * 1000
    conn = sqlite3.connect(directory / "probe.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    started = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (str(i), "x" * 200))
        conn.execute("COMMIT")
    index_ms = (time.perf_counter() - started) / n * 1000
    conn.close()
    journal = directory / "journal.probe"
    fd = os.open(journal, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        os.write(fd, bytes(n * size))
        os.fsync(fd)
        started = time.perf_counter()
        for i in range(n):
            os.pwrite(fd, data, i * size)
            os.fdatasync(fd)
        journal_ms = (time.perf_counter() - started) / n * 1000
    finally:
        os.close(fd)
    return file_ms, index_ms, journal_ms


@register("listener")
def bench_listener() -> list[Measurement]:
    """storescp vs our listener (durable), 1 and 4 associations; see module doc."""
    if not dcmtk_tool("storescu") or not dcmtk_tool("storescp"):
        raise SystemExit("bench listener needs dcmtk (storescu, storescp) on PATH")
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-listener-") as tmp:
        work = Path(tmp)
        source = work / "source"
        source.mkdir()
        paths = write_instances(source)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        groups = [work / f"assoc{k}" for k in range(ASSOCIATIONS)]
        for k, group in enumerate(groups):
            group.mkdir()
            for path in paths[k::ASSOCIATIONS]:
                os.link(path, group / path.name)
        layouts = {1: [source], ASSOCIATIONS: groups}
        results: dict[tuple[str, int], float] = {}
        cpu: dict[tuple[str, int], float] = {}
        for count, dirs in layouts.items():  # interleave runs so load changes hit both sides alike
            placed = PLACEMENTS if count == 1 and placements_available() else {}
            runs: dict[str, list[tuple[float, float]]] = {
                "storescp": [],
                "storescp-durable": [],
                **{name: [] for name in placed},
                **{name: [] for name in VARIANTS},
            }
            for _ in range(REPEATS):
                runs["storescp"].append(run_storescp(work, dirs))
                runs["storescp-durable"].append(run_storescp(work, dirs, extra_args=STORESCP_DURABLE_ARGS))
                for name, cpus in placed.items():
                    runs[name].append(run_storescp(work, dirs, cpus))
                for name, settings in VARIANTS.items():
                    runs[name].append(run_listener(work, dirs, settings))
            for name, values in runs.items():
                results[(name, count)] = statistics.median(v[0] for v in values)
                cpu[(name, count)] = statistics.median(v[1] for v in values)
        for count in layouts:
            base_s = results[("storescp", count)]
            label = f"storescp {count} assoc"
            rows.append(Measurement("listener", f"storescp {count} assoc", N_INSTANCES / base_s, "inst/s"))
            rows.append(Measurement("listener", f"storescp {count} assoc", megabytes / base_s, "MB/s"))
            for name, title, target in (
                ("ours", "ours durable (journal)", ">= 0.5x"),
                ("ours-no-holdback", "ours durable (journal, files written during the push)", ""),
                ("ours-file-fsync", "ours durable (fsync per file)", ""),
                ("ours-nofsync", "ours without fsync", ""),
            ):
                seconds = results[(name, count)]
                rows.append(
                    Measurement(
                        "listener",
                        f"{title} {count} assoc",
                        N_INSTANCES / seconds,
                        "inst/s",
                        N_INSTANCES / base_s,
                        label,
                        target,
                    )
                )
                rows.append(
                    Measurement(
                        "listener", f"{title} {count} assoc", megabytes / seconds, "MB/s", megabytes / base_s, label
                    )
                )
        for count in layouts:
            durable_s = results[("storescp-durable", count)]
            durable_label = f"storescp durable {count} assoc"
            rows.append(Measurement("listener", durable_label, N_INSTANCES / durable_s, "inst/s"))
            rows.append(
                Measurement(
                    "listener",
                    f"ours durable (journal) {count} assoc vs storescp durable (sync --data per file)",
                    N_INSTANCES / results[("ours", count)],
                    "inst/s",
                    N_INSTANCES / durable_s,
                    durable_label,
                )
            )
        for name, title in PLACEMENT_TITLES.items():
            if (name, 1) not in results:
                continue
            placed_s = results[(name, 1)]
            rows.append(Measurement("listener", f"storescp 1 assoc, {title}", N_INSTANCES / placed_s, "inst/s"))
            rows.append(
                Measurement(
                    "listener",
                    f"ours durable (journal) 1 assoc vs storescp, {title}",
                    N_INSTANCES / results[("ours", 1)],
                    "inst/s",
                    N_INSTANCES / placed_s,
                    f"storescp 1 assoc, {title}",
                )
            )
        rows.append(
            Measurement(
                "listener",
                f"ours durable {ASSOCIATIONS} vs 1 assoc",
                N_INSTANCES / results[("ours", ASSOCIATIONS)],
                "inst/s",
                N_INSTANCES / results[("ours", 1)],
                "ours durable (journal) 1 assoc",
                ">= 1x",
            )
        )
        file_ms, index_ms, journal_ms = durability_cost_ms(work, int(megabytes * 1e6 / N_INSTANCES))
        rows.append(Measurement("listener", "fsync file+dir per instance", file_ms, "ms"))
        rows.append(Measurement("listener", "journal append + fdatasync per instance", journal_ms, "ms"))
        rows.append(Measurement("listener", "index commit (synchronous=FULL)", index_ms, "ms"))
        rows.append(
            Measurement("listener", "storescp time per instance", results[("storescp", 1)] / N_INSTANCES * 1000, "ms")
        )
        for count in layouts:
            for name in ("storescp", "storescp-durable", *VARIANTS):
                per_instance_ms = cpu[(name, count)] / N_INSTANCES * 1000
                rows.append(
                    Measurement("listener", f"{name} server CPU per instance ({count} assoc)", per_instance_ms, "ms")
                )
    return rows


if __name__ == "__main__":
    for row in bench_listener():
        print(row)

"""Run a :class:`DatasetBuilder`: parallel, resumable, atomic, with a progress bar and a manifest.

Resume protocol: ``<out>/.p2ptools-build.json`` pins the configuration of a build in progress and
``<out>/.p2ptools-journal.jsonl`` gets one line per finished pair, appended after the pair's files
were renamed into place (buffered, flushed twice a second and when the build stops). A rerun
(after Ctrl-C or even SIGKILL) skips the journaled pairs whose files still exist and makes the rest,
replacing any file whose line never reached the journal; a torn last journal line is ignored and
its pair made again. When every pair is done the manifest is written and the two bookkeeping files
are removed.

Safety (:mod:`p2ptools.outputs`): ``out`` is locked against a second process; an ``out`` equal to,
inside or containing a source is refused, and so is a non-empty folder that holds no build of ours.
``--overwrite`` of a dataset of ours builds the new one beside it (``.<name>.p2ptools-new``, itself
resumable) and swaps it in only when complete, so the old dataset stays readable until then.

Parallelism: forked worker processes (:mod:`p2ptools.buildkit.forkpool`) where forking is safe, else
a ``forkserver`` process pool, or threads for builders that declare GIL-free work; jobs go out in
chunks of about a quarter of a second (:class:`_Chunker`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, fields, is_dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2ptools.buildkit.forkpool import run_forked
from p2ptools.buildkit.memory import keep_freed_memory
from p2ptools.errors import ConfigError, OutputError, P2PError
from p2ptools.imageio import encode_image, opencv_single_threaded, write_bytes_atomic, write_text_atomic
from p2ptools.locks import output_lock
from p2ptools.options import to_dict
from p2ptools.outputs import OWNER_NAME, claim, discard, recover_swap, refuse_foreign, refuse_overlap, refuse_unknown_entries, staging_path, swap_in
from p2ptools.pairs import DATASET, MANIFEST_NAME, SPLITS, Manifest, PairRecord, SkippedRecord, encode_pair, load_manifest
from p2ptools.progress import make_progress

if TYPE_CHECKING:  # annotations only: the contract's build() imports this module
    from p2ptools.buildkit.contract import BuildOptions, DatasetBuilder, PairJob

STATE_NAME = ".p2ptools-build.json"
JOURNAL_NAME = ".p2ptools-journal.jsonl"
#: Longest time a finished pair may wait in memory before its journal line reaches the file.
JOURNAL_FLUSH_S = 0.5

# Set in each worker process by _init_worker (once per worker, not pickled per task).
_WORKER: dict[str, Any] = {}


def build_config(builder: DatasetBuilder, sources: Sequence[Path], build: BuildOptions) -> dict[str, Any]:
    """The configuration that determines a build's output (workers, overwrite and skip_bad do not:
    switching to --skip-bad is how a build stopped by a bad item is resumed)."""
    opts = {k: v for k, v in asdict(build).items() if k not in ("workers", "overwrite", "skip_bad")}
    return {
        "builder": {"name": builder.name, "version": builder.version},
        "options": to_dict(builder.options),
        "build": opts,
        "source": [str(Path(s).resolve()) for s in sources],
    }


def _make_one(builder: DatasetBuilder, job: PairJob, build: BuildOptions, out: Path) -> dict[str, Any]:
    """Make, encode and atomically write one pair and its extras; return its journal record."""
    try:
        result = builder.make_pair(job, build)
        name = f"{job.split}/{job.name}"
        data = encode_pair(result.a, result.b, build.format, quality=build.quality, name=name, bgr=result.bgr)
        extras_data = {kind: encode_image(img, "png") for kind, img in result.extras.items()}
    except P2PError as exc:
        return {"split": job.split, "name": job.name, "sources": list(job.sources), "error": str(exc)}
    rel = f"{job.split}/{job.name}.{build.format}"
    write_bytes_atomic(out / rel, data)
    extras = {}
    for kind, blob in extras_data.items():
        erel = f"{kind}/{job.split}/{job.name}.png"
        write_bytes_atomic(out / erel, blob)
        extras[kind] = {"file": erel, "sha256": hashlib.sha256(blob).hexdigest()}
    return {
        "split": job.split,
        "name": job.name,
        "file": rel,
        "sources": list(job.sources),
        "sha256": hashlib.sha256(data).hexdigest(),
        "extras": extras,
        "size": [int(result.a.shape[0]), int(result.a.shape[1])],
    }


def _init_worker(builder: DatasetBuilder, build: BuildOptions, out: Path) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    # Ctrl-C reaches the whole process group: the parent decides (it lets running chunks finish,
    # then stops the workers), and workers print no tracebacks of their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()  # this process is ours: reuse image buffers instead of page-faulting new ones
    _WORKER.update(builder=builder, build=build, out=out)


def _run_chunk(jobs: list[PairJob]) -> list[dict[str, Any]]:
    return [_make_one(_WORKER["builder"], job, _WORKER["build"], _WORKER["out"]) for job in jobs]


def _read_journal(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by SIGKILL: that pair is simply made again
        done[(rec["split"], rec["name"])] = rec
    return done


def _limited(jobs: Iterable[PairJob], limit: int | None) -> Iterator[PairJob]:
    seen: dict[str, int] = {}
    names: set[tuple[str, str]] = set()
    for job in jobs:
        key = (job.split, job.name)
        if key in names:
            raise ConfigError(f"two source items map to the same output name {job.split}/{job.name}")
        names.add(key)
        if limit is not None and seen.get(job.split, 0) >= limit:
            continue
        seen[job.split] = seen.get(job.split, 0) + 1
        yield job


def _check_out(out: Path, config: dict[str, Any], overwrite: bool) -> tuple[Path, Manifest | None]:
    """Decide where to build (nothing is written here): ``(out, None)`` to build or resume in ``out``,
    ``(staging, None)`` to build a replacement beside ``out`` (``--overwrite`` of a dataset of ours),
    or ``(out, manifest)`` when ``out`` already holds this exact build."""
    state = refuse_foreign(out, DATASET, "--out")
    recover_swap(out)
    if overwrite and state == "ours":
        kinds, files = _dataset_files(out)
        refuse_unknown_entries(out, partial(_is_build_entry, kinds), "--out", listed=files, within=(*SPLITS, *kinds))
        return staging_path(out), None
    manifest_path, state_path = out / MANIFEST_NAME, out / STATE_NAME
    if manifest_path.exists() and not state_path.exists():
        manifest = load_manifest(out)
        if manifest_matches(manifest, config):
            return out, manifest
        made, now = manifest.builder, config["builder"]
        how = (f"by {made.get('name')} version {made.get('version')}, not {now['name']} version {now['version']}"
               if made != now else "with other options")  # fmt: skip
        raise ConfigError(f"{out}: holds a dataset built {how}; use --overwrite (the old one stays until "
                          "the new one is complete) or another --out")
    if state_path.exists():
        previous = json.loads(state_path.read_text())
        if previous.get("config") != config:
            raise ConfigError(
                f"{out}: an interrupted build with other options is in progress there; "
                "rerun it with the same options to resume, or use --overwrite"
            )
    return out, None


def _dataset_files(out: Path) -> tuple[set[str], set[str]]:
    """The extras kinds and every file (relative posix paths) of the dataset in ``out``, from its
    manifest and the journal of an unfinished build."""
    records: list[dict[str, Any]] = []
    if (out / MANIFEST_NAME).is_file():
        try:
            records = [{"file": rec.file, "extras": rec.extras} for rec in load_manifest(out).pairs]
        except P2PError:
            pass
    records += list(_read_journal(out / JOURNAL_NAME).values())
    kinds = {k for rec in records for k in rec.get("extras", {})}
    files = {rec["file"] for rec in records} | {e["file"] for rec in records for e in rec.get("extras", {}).values()}
    return kinds, files


def _is_build_entry(kinds: set[str], name: str) -> bool:
    """Whether a top-level entry of a dataset folder is one a build writes."""
    return name in SPLITS or name in kinds or name in (MANIFEST_NAME, STATE_NAME, JOURNAL_NAME, OWNER_NAME) or name.startswith(".tmp-")


def _prepare_staging(staging: Path, config: dict[str, Any]) -> None:
    """Keep an interrupted replacement of this configuration (it resumes); drop one of another."""
    state_path = staging / STATE_NAME
    if not staging.exists():
        return
    try:
        same = json.loads(state_path.read_text()).get("config") == config
    except (OSError, ValueError):
        same = False
    if not same:
        discard(staging)


def _builder_inputs(builder: DatasetBuilder, sources: Sequence[Path]) -> list[Path]:
    """Every input path of a build: the sources and the builder's path options (--source-a, --aerial)."""
    found = list(sources)
    if is_dataclass(builder.options):
        found += [v for v in (getattr(builder.options, f.name) for f in fields(builder.options)) if isinstance(v, Path)]
    return found


def manifest_matches(manifest: Manifest, config: dict[str, Any]) -> bool:
    """Whether a finished dataset's manifest was built by the same builder version with the same options
    as ``config`` (a :func:`build_config`)."""
    return {"builder": manifest.builder, **manifest.options} == {"builder": config["builder"], **_manifest_options(config)}


def _manifest_options(config: dict[str, Any]) -> dict[str, Any]:
    return {"builder_options": config["options"], "build": config["build"]}


def run_build(
    builder: DatasetBuilder,
    sources: Sequence[Path],
    out: Path,
    build: BuildOptions,
    *,
    progress: bool = True,
) -> Manifest:
    """Build ``builder``'s dataset from ``sources`` into ``out``.

    Args:
        builder: a configured builder.
        sources: source folders or archives (may be empty for builders that need none).
        out: output dataset root.
        build: the common options (size, limit, seed, workers, format, quality, overwrite, skip_bad).
        progress: draw a progress bar.

    Returns:
        The written manifest.

    Raises:
        P2PError: a bad source item (unless ``skip_bad``), with the builder's message naming the
            file; pairs finished so far are kept and a rerun resumes from them.
        ConfigError: ``out`` holds another build.
    """
    out = Path(out)
    sources = [Path(s) for s in sources]
    if builder.needs_source and not sources:
        raise ConfigError(f"builder {builder.name!r} needs --source: {builder.source_layout}")
    refuse_overlap(out, _builder_inputs(builder, sources), "--out")
    with output_lock(out):
        return _run_build_locked(builder, sources, out, build, progress)


def _run_build_locked(builder: DatasetBuilder, sources: list[Path], out: Path, build: BuildOptions, progress: bool) -> Manifest:
    config = build_config(builder, sources, build)
    target, finished = _check_out(out, config, build.overwrite)
    if finished is not None:
        return finished
    # Every check that can fail (sources exist, archives open, names are unique) runs in plan(),
    # before anything is written; a replacement is then built beside ``out`` and swapped in at the end.
    jobs = list(_limited(builder.plan(sources, build), build.limit))
    if target != out:
        _prepare_staging(target, config)
    final, out = out, target
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out, exc) from None
    claim(out, DATASET)  # first: from here on the folder is provably ours (an interrupted build resumes)
    state_path, journal_path = out / STATE_NAME, out / JOURNAL_NAME
    write_text_atomic(state_path, json.dumps({"config": config}, indent=1))
    _remove_stale_temporaries(out)
    done = _read_journal(journal_path)
    pending = [j for j in jobs if not _is_done(out, done.get((j.split, j.name)))]

    # The journal is flushed at most every JOURNAL_FLUSH_S (each append costs the file system a
    # block update; a pair whose line was still buffered at a SIGKILL is simply made again) and
    # whenever the build stops, including on errors and Ctrl-C.
    with _Journal(journal_path) as journal, make_progress(progress) as bar:
        task = bar.add_task(f"{builder.name}", total=len(jobs), completed=len(jobs) - len(pending))
        last_flush = time.monotonic()

        def record(recs: list[dict[str, Any]]) -> None:
            """Journal a batch of finished pairs; stop at a bad item."""
            nonlocal last_flush
            good = [r for r in recs if build.skip_bad or "error" not in r]
            journal.write("".join(json.dumps(r) + "\n" for r in good))
            if time.monotonic() - last_flush >= JOURNAL_FLUSH_S:
                journal.flush()
                last_flush = time.monotonic()
            for rec in good:
                done[(rec["split"], rec["name"])] = rec
            bar.advance(task, len(good))
            bad = next((r for r in recs if "error" in r and not build.skip_bad), None)
            if bad is not None:
                raise P2PError(bad["error"])  # the message already names the file

        _execute(builder, pending, build, out, record)

    manifest = _assemble(builder, jobs, done, config, out)
    manifest.write(out)
    state_path.unlink(missing_ok=True)
    journal_path.unlink(missing_ok=True)
    if out != final:
        swap_in(out, final)
    return manifest


class _Journal:
    """The build's journal, appended with a large buffer; a write that fails (a full disk) raises
    OutputError naming it. Closing after another error keeps that error (a pair's full disk names
    the pair's file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fh = open(path, "a", encoding="utf-8", buffering=1 << 20)
        except OSError as exc:
            raise OutputError(path, exc) from None

    def write(self, text: str) -> None:
        try:
            self._fh.write(text)
        except OSError as exc:
            raise OutputError(self.path, exc) from None

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as exc:
            raise OutputError(self.path, exc) from None

    def __enter__(self) -> _Journal:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            self._fh.close()
        except OSError as exc:
            if kind is None:
                raise OutputError(self.path, exc) from None


def _remove_stale_temporaries(out: Path) -> None:
    """Delete ``.tmp-*`` files a killed worker left mid-write (their pairs are made again)."""
    for path in out.rglob(".tmp-*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def _is_done(out: Path, rec: dict[str, Any] | None) -> bool:
    if rec is None:
        return False
    if "error" in rec:
        return True
    return (out / rec["file"]).exists() and all((out / e["file"]).exists() for e in rec["extras"].values())


def _mp_context() -> multiprocessing.context.BaseContext:
    """``fork`` when it is safe (fast: workers inherit the builder), else ``forkserver``.

    Forking a process that runs other threads (an HTTP server, a progress thread) or has
    initialised torch's OpenMP pools can deadlock the children; then workers start from a clean
    server process and receive the builder pickled (builders keep picklable state by contract).
    """
    if threading.active_count() > 1 or "torch" in sys.modules:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("fork")


def start_forkserver_ignoring_sigint() -> None:
    """Start multiprocessing's forkserver, if it is not running yet, with SIGINT ignored.

    The server hands the SIGINT disposition it started with to every worker it forks, and Python
    keeps SIGINT ignored when it starts with it ignored, so the workers ignore Ctrl-C from their
    first instruction. ``_init_worker``'s own ``SIG_IGN`` comes only after a worker has imported the
    builder's modules; a Ctrl-C in that window printed a worker's traceback. A Ctrl-C during the
    server's start (milliseconds) is dropped. Outside the main thread, where signal handlers cannot
    be set, the server starts as it would anyway.
    """
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def _execute(builder: DatasetBuilder, pending: list[PairJob], build: BuildOptions, out: Path, record) -> None:
    if not pending:
        return
    if build.workers == 1 or len(pending) == 1:
        for job in pending:
            record([_make_one(builder, job, build, out)])
        return
    workers = min(build.workers, len(pending))
    chunker = _Chunker(pending, workers)

    def done(recs: list[dict[str, Any]]) -> None:
        chunker.finish(len(recs))
        record(recs)

    with opencv_single_threaded():  # one core per worker; and a parent's live OpenCV pool does not survive fork
        if builder.parallelism == "threads":
            with ThreadPoolExecutor(workers) as pool:
                _drain(pool, partial(_make_chunk, builder, build, out), chunker.take, done, workers)
        else:
            ctx = _mp_context()
            if ctx.get_start_method() == "fork":
                run_forked(chunker.take, done, workers, _run_chunk, _init_worker, (builder, build, out))
            else:
                start_forkserver_ignoring_sigint()
                with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(builder, build, out)) as pool:
                    _drain(pool, _run_chunk, chunker.take, done, workers)


class _Chunker:
    """Hands the pending jobs out in chunks that take about ``seconds`` each: few messages between
    processes for fast builders, a live progress bar and little lost work for slow ones.

    A chunk is never more than ``largest`` jobs nor more than a ``1 / (2 * workers)`` share of what
    is left (guided scheduling: the last chunks are single jobs, so that no worker idles while
    another finishes a long one). Until a job has finished, chunks are single jobs. The time per job
    is estimated from the jobs finished so far with every worker busy.
    """

    def __init__(self, jobs: list[PairJob], workers: int, *, seconds: float = 0.25, largest: int = 64,
                 clock=time.monotonic) -> None:  # fmt: skip
        self.jobs, self.workers, self.seconds, self.largest, self.clock = jobs, workers, seconds, largest, clock
        self.next_index = 0
        self.finished = 0
        self.started = clock()

    def finish(self, count: int) -> None:
        """Note that ``count`` more jobs have finished."""
        self.finished += count

    def take(self) -> list[PairJob] | None:
        """The next chunk, or None when every job has been handed out."""
        left = len(self.jobs) - self.next_index
        if left <= 0:
            return None
        size = 1
        if self.finished:
            per_job = (self.clock() - self.started) * self.workers / self.finished
            by_time = int(self.seconds / per_job) if per_job > 0 else self.largest
            size = max(1, min(self.largest, left // (self.workers * 2), by_time))
        chunk = self.jobs[self.next_index : self.next_index + size]
        self.next_index += size
        return chunk


def _make_chunk(builder: DatasetBuilder, build: BuildOptions, out: Path, jobs: list[PairJob]) -> list[dict[str, Any]]:
    return [_make_one(builder, job, build, out) for job in jobs]


def _drain(pool: Executor, run, take, done, workers: int) -> None:
    """Keep a bounded number of the chunks ``take()`` hands out in flight and pass each result to
    ``done`` as it finishes (the contract of :func:`~p2ptools.buildkit.forkpool.run_forked`); on any
    error (a bad item, Ctrl-C) cancel what has not started and wait for what has."""
    futures: set[Future] = set()
    try:
        while len(futures) < workers * 4 and (chunk := take()) is not None:
            futures.add(pool.submit(run, chunk))
        while futures:
            finished, futures = wait(futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                done(fut.result())
                if (chunk := take()) is not None:
                    futures.add(pool.submit(run, chunk))
    except BaseException:
        for fut in futures:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise


def _assemble(builder: DatasetBuilder, jobs: list[PairJob], done: dict, config: dict, out: Path) -> Manifest:
    pairs, skipped, sizes = [], [], set()
    order = {s: i for i, s in enumerate(SPLITS)}
    for job in sorted(jobs, key=lambda j: (order.get(j.split, len(order)), j.split, j.name)):
        rec = done[(job.split, job.name)]
        if "error" in rec:
            skipped.append(SkippedRecord(rec["split"], rec["name"], rec["sources"], rec["error"]))
            continue
        sizes.add(tuple(rec["size"]))
        pairs.append(PairRecord(rec["split"], rec["name"], rec["file"], rec["sources"], rec["sha256"], rec["extras"]))
    return Manifest(
        builder=config["builder"],
        options=_manifest_options(config),
        source=config["source"],
        image_size=list(next(iter(sizes))) if len(sizes) == 1 else None,
        file_format=config["build"]["format"],
        pairs=pairs,
        skipped=skipped,
        extras=builder.manifest_extras(),
    )

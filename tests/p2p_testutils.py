"""Test utilities shared by every test folder (importable: ``pythonpath = tests`` in pyproject)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import subprocess
import sys
import tarfile
import textwrap
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from p2ptools.outputs import OWNER_NAME
from p2ptools.pairs import write_pair

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str




def run_p2ptools(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> CliResult:
    """Run ``python -m p2ptools ARGS`` in a subprocess (real exit codes, real sys.path)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "p2ptools", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def make_distribution(site: Path, dist: str, package: str, entry_points: dict[str, dict[str, str]], code: str) -> Path:
    """Create an installed-looking distribution in ``site``: ``<package>/__init__.py`` with
    ``code`` and ``<dist>-1.0.dist-info`` with METADATA and entry_points.txt."""
    site.mkdir(parents=True, exist_ok=True)
    pkg = site / package
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\nSummary: test plugin\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def build_then_sigkill(command: list[str], out: Path, *, pairs: int, env: dict[str, str] | None = None) -> int:
    """Start a ``make-dataset`` command in a session of its own and SIGKILL it with its workers once
    ``pairs`` pair files are in place (asserting it had not finished by then). The journal may lag
    behind the files (it is flushed twice a second): the resumed build must cope with both.

    Returns the process's exit status (``-SIGKILL``)."""
    import signal
    import time

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)

    def finished() -> int:
        return sum(1 for split in ("train", "val", "test") if (Path(out) / split).is_dir()
                   for p in (Path(out) / split).iterdir() if not p.name.startswith("."))

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if finished() >= pairs:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    return proc.returncode


_TRAPPED_BUILD = """
import os, runpy, signal, sys
from p2ptools import registry

if __name__ == "__main__":  # forkserver workers import this file again: only the CLI runs it
    builder = registry.load("datasets", sys.argv[1])
    action, after = sys.argv[2], int(sys.argv[3])
    fired = sys.argv[0] + f".{os.getpid()}.fired"  # one flag per run (this process is the CLI)
    made = []
    original = builder.make_pair

    def make_pair(self, job, build):
        if len(made) == after:  # this process has made its share
            if action == "sigkill":  # the CLI and every worker, at once
                os.killpg(os.getpgrp(), signal.SIGKILL)
            elif action == "sigint":  # one Ctrl-C (the first worker to get here): the whole process group
                try:
                    os.close(os.open(fired, os.O_CREAT | os.O_EXCL))
                    os.killpg(os.getpgrp(), signal.SIGINT)
                except FileExistsError:
                    pass
            elif action == "exit":  # this process dies (as the OOM killer would end it), exit status 3
                os._exit(3)
            elif action == "raise":  # a bug in the builder
                raise ZeroDivisionError("trap in make_pair")
        made.append(job.name)
        return original(self, job, build)

    builder.make_pair = make_pair
    if "P2PTOOLS_TEST_JOURNAL_FLUSH_S" in os.environ:  # e.g. never: the journal stays behind the files
        import p2ptools.buildkit.runner as runner

        runner.JOURNAL_FLUSH_S = float(os.environ["P2PTOOLS_TEST_JOURNAL_FLUSH_S"])

    if action == "sigint-from-parent":  # Ctrl-C once the parent has recorded `after` pairs
        import torch  # noqa: F401  (as HED's builders do: the runner then starts workers by forkserver)
        import p2ptools.buildkit.runner as runner

        finish = runner._Chunker.finish
        def finish_then_interrupt(self, count):
            finish(self, count)
            if self.finished >= after and not os.path.exists(fired):
                open(fired, "w").close()
                os.killpg(os.getpgrp(), signal.SIGINT)
        runner._Chunker.finish = finish_then_interrupt

    sys.argv = ["p2ptools", "make-dataset", *sys.argv[1:2], *sys.argv[4:]]
    runpy.run_module("p2ptools", run_name="__main__")
"""


def run_trapped_build(builder: str, action: str, after: int, args: list, out: Path,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """``make-dataset BUILDER ARGS --out OUT`` in a session of its own, with a trap in the
    builder's ``make_pair``: when a process (the CLI, or a forked worker, which inherits the trap)
    is about to make its ``after + 1``-th pair it does ``action``: ``sigkill`` or ``sigint`` the
    process group, ``exit`` (that process dies), ``raise`` (an exception). ``sigint-from-parent``
    imports torch first (workers are then started by forkserver, without the trap) and sends one
    SIGINT to the group once the parent has recorded ``after`` pairs."""
    script = out.parent / f".trap-{builder}-{action}.py"
    script.write_text(_TRAPPED_BUILD)
    return subprocess.run([sys.executable, str(script), builder, action, str(after), *map(str, args), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, start_new_session=True, env={**os.environ, **(env or {})},
                          preexec_fn=default_sigint)


def default_sigint() -> None:
    """``preexec_fn`` for a child that must see Ctrl-C: SIGINT back to its default disposition.

    A suite started in the background of a script (``make test &``) inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler in its children, as a shell expects."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pair_files(out: Path) -> int:
    """Pair files in the split folders of a (possibly unfinished) build, temporaries not counted."""
    return sum(1 for split in ("train", "val", "test") if (out / split).is_dir()
               for p in (out / split).iterdir() if not p.name.startswith("."))


def assert_resumes_like_a_clean_build(builder: str, args: list, out: Path, clean: Path) -> int:
    """An interrupted build in ``out`` left no manifest; ``make-dataset BUILDER ARGS`` again there
    must finish it, equal to a clean build into ``clean`` file for file and byte for byte, with no
    temporaries or journal left. Returns the number of pair files of the finished build."""
    argv = [str(a) for a in args]
    assert not (out / "manifest.json").exists()
    resumed = run_p2ptools("make-dataset", builder, *argv, "--out", str(out))
    assert resumed.code == 0, resumed.stderr
    fresh = run_p2ptools("make-dataset", builder, *argv, "--out", str(clean))
    assert fresh.code == 0, fresh.stderr
    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (clean / rel).read_bytes(), rel
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != OWNER_NAME]  # no temporaries, no journal (the ownership record stays)
    return sum(1 for f in files if f.parts[0] in ("train", "val", "test"))


def kill_mid_build_then_resume(builder: str, args: list[str], out: Path, clean: Path, *, kill_after: int = 2) -> int:
    """``make-dataset BUILDER ARGS --out OUT``, SIGKILLed with its workers (they are forked, so they
    carry the trap) when one process is about to make its ``kill_after + 1``-th pair; then
    :func:`assert_resumes_like_a_clean_build`.

    Returns the number of pair files the killed build had left."""
    import signal

    killed = run_trapped_build(builder, "sigkill", kill_after, args, out)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    made = pair_files(out)
    assert made >= 1
    assert made < assert_resumes_like_a_clean_build(builder, args, out, clean), "the build must be killed mid-way"
    return made


def pix2pix_reference():
    """The independent reference pix2pix networks (tests/pix2pix/reference_pix2pix.py), loaded
    once by path so the plugin under test is never imported to build them."""
    import importlib.util
    import sys

    name = "p2p_reference_pix2pix"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "pix2pix" / "reference_pix2pix.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


# ----------------------------------------------------------------------------------------------
# tiny aligned datasets where B is a fixed function of A (training tests)

def target_of(a: np.ndarray) -> np.ndarray:
    """B = colour-inverted A with R and B swapped: a per-pixel function the networks can learn."""
    return np.ascontiguousarray(255 - a[:, :, ::-1])


def make_dataset(root: Path, *, train: int = 8, val: int = 4, size: int = 32, seed: int = 0, fmt: str = "png") -> Path:
    """Write ``root/{train,val}/NNN.<fmt>`` pairs of smooth random images (size x size halves)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            a = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
            write_pair(root / split / f"{i:03d}.{fmt}", a, target_of(a))
    return root


class HttpServer:
    """Serves ``files`` (path -> bytes) with ``Range: bytes=N-`` support; records the requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.honour_range = True
        self.cut_after: int | None = None  # send only this many bytes of the next response, then close
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(data[start : start + server.cut_after])
                    server.cut_after = None
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A .tar.gz of ``(TarInfo, data)`` members (data None: a link or folder entry)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def jpeg_bytes(seed: int) -> bytes:
    """An 8x16 JPEG of the gray value ``seed * 40`` (two 8x8 halves of a pair)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 16, 3), seed * 40, np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small, structurally complete PNG whose IHDR claims ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes): compare a folder before and after."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def assert_one_line_error(res: CliResult, *needles: str) -> str:
    """``res`` failed with exit code 1 and exactly one ``error: ...`` line on stderr holding every
    needle; returns that line."""
    assert res.code == 1, res
    line = res.stderr.strip()
    assert res.stderr.startswith("error: ") and "\n" not in line, res.stderr
    for needle in needles:
        assert needle in line, line
    return line


@contextlib.contextmanager
def sigint_at_step(module, name: str, step: int):
    """Inside: ``module.<name>`` (a trainer's step function, looked up at each call) sends this
    process SIGINT just before its ``step``-th call runs; the trainer's handler saves a checkpoint
    at that step boundary and raises KeyboardInterrupt. The real function is put back on leaving."""
    real, calls = getattr(module, name), [0]

    def interrupting(*args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    setattr(module, name, interrupting)
    try:
        yield
    finally:
        setattr(module, name, real)


def record_checkpoint_writes(monkeypatch) -> list[int]:
    """The steps of the full checkpoints written from now on (``checkpoint.write_checkpoint`` recorded)."""
    from p2ptools.training import checkpoint as ckpt

    written: list[int] = []
    real = ckpt.write_checkpoint

    def record(run_dir, snapshot):
        written.append(snapshot.step)
        return real(run_dir, snapshot)

    monkeypatch.setattr(ckpt, "write_checkpoint", record)
    return written

"""``python -m backend serve`` and ``python -m backend ping``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import warnings
from pathlib import Path
from types import FrameType

from protocol import Client, Limits, ProtocolError, read_connection_file, write_connection_file

from .basic import register_basic_handlers
from .config import ServerConfig
from .core import Server

log = logging.getLogger("backend.server")


LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(log_file: Path | None, level: str = "info") -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.touch(mode=0o600, exist_ok=True)
        log_file.chmod(0o600)  # the log names scenes, instructions and paths: the owner's alone
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)  # library warnings go to the log file too, with a level
    if level != "debug":  # deprecation chatter of torch / nerfstudio set-up, once per job: not the user's concern
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"nerfstudio\.")
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend serve", description="Run the server Blender connects to.")
    parser.add_argument("--connection-file", type=Path, default=None,
                        help="where to write host/port/key (mode 0600) (default: a file in the temp dir)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (non-loopback needs a key) (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 lets the OS choose a free one (default: %(default)s)")
    parser.add_argument("--key", default=None,
                        help="HMAC key (visible to other users in the process list: prefer --key-file or the "
                             "IN2N_BACKEND_KEY environment variable) (default: a fresh random key)")
    parser.add_argument("--key-file", type=Path, default=None,
                        help="read the HMAC key from this file (first line; the file should be mode 0600) (default: none)")
    parser.add_argument("--max-frame-mb", type=float, default=256.0, help="largest accepted frame in MiB (default: %(default)s)")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat interval in seconds (default: %(default)s)")
    parser.add_argument("--no-device-probe", action="store_true", help="do not import torch to report the GPU")
    parser.add_argument("--jobs-dir", type=Path, default=None,
                        help="uploaded scenes, jobs and their results; unfinished jobs found there resume at start "
                             "(default: a 'jobs' folder beside the connection file, else ~/.cache/in2n-blender/jobs)")
    parser.add_argument("--editor", default="timbrooks/instruct-pix2pix",
                        help="editor of jobs that do not choose one: Hugging Face id, local diffusers folder, tiny, "
                             "full-random (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="device of jobs that do not choose one (default: auto)")
    parser.add_argument("--model-dir", type=Path, action="append", default=[],
                        help="a folder of diffusers models clients may choose as their editor (repeatable); other "
                             "paths on this machine cannot be named by a client (default: none)")
    parser.add_argument("--max-scene-mb", type=float, default=8192.0,
                        help="largest accepted scene upload in MiB (default: %(default)s)")
    parser.add_argument("--max-snapshots-gb", type=float, default=100.0,
                        help="disk space all jobs' NeRF snapshots may take together in GiB; beyond it, no new "
                             "scheduled snapshot is kept (default: %(default)s)")
    parser.add_argument("--no-jobs", action="store_true", help="answer hello/ping/shutdown only (no job handlers)")
    parser.add_argument("--log-file", type=Path, default=None,
                        help="also log to this file (default: server.log in the jobs folder)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="least severe level logged (default: info)")
    parser.add_argument("--verbose", action="store_const", const="debug", dest="log_level", help="same as --log-level debug")
    return parser


def jobs_dir_for(args: argparse.Namespace) -> Path:
    if args.jobs_dir is not None:
        return Path(args.jobs_dir)
    if args.connection_file is not None:
        return Path(args.connection_file).resolve().parent / "jobs"
    return Path.home() / ".cache" / "in2n-blender" / "jobs"


def add_job_service(server: Server, args: argparse.Namespace) -> None:
    from .jobs import register_job_service  # imports the engine module (numpy), not torch

    register_job_service(server, args)


def server_key(args: argparse.Namespace) -> str | None:
    """The key from --key-file, $IN2N_BACKEND_KEY or --key (in that order); None: generate one."""
    if args.key_file is not None:
        try:
            lines = args.key_file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise OSError(f"--key-file {args.key_file}: {error.strerror or error}") from None
        return lines[0].strip() if lines else ""
    return os.environ.get("IN2N_BACKEND_KEY", args.key)


def build_server(args: argparse.Namespace) -> Server:
    frame = int(args.max_frame_mb * 1024 * 1024)
    config = ServerConfig(
        host=args.bind,
        port=args.port,
        key=server_key(args),
        limits=Limits(max_frame_bytes=frame, max_message_bytes=max(frame, Limits().max_message_bytes)),
        heartbeat_interval_s=args.heartbeat,
        probe_device=not args.no_device_probe,
    )
    server = Server(config)
    register_basic_handlers(server)
    if not getattr(args, "no_jobs", False):
        args.jobs_dir = jobs_dir_for(args)
        add_job_service(server, args)
    return server


def main_serve(argv: list[str] | None = None) -> int:
    args = serve_parser().parse_args(argv)
    if args.log_file is None and not args.no_jobs:
        args.log_file = jobs_dir_for(args) / "server.log"
    setup_logging(args.log_file, args.log_level)
    try:
        server = build_server(args)
        info = server.bind()
    except (ProtocolError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    connection_file = args.connection_file or Path(tempfile.gettempdir()) / f"in2n-backend-{info.port}.json"
    write_connection_file(connection_file, info)
    log.info("connection file: %s", connection_file)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.serve_forever()
    finally:
        Path(connection_file).unlink(missing_ok=True)
    return 0


def main_ping(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend ping", description="Ask a running server if it is alive.")
    parser.add_argument("--connection-file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--hello", action="store_true", help="also print server info (waits for the GPU probe)")
    args = parser.parse_args(argv)
    try:
        info = read_connection_file(args.connection_file)
        with Client(info, timeout_s=args.timeout, retries=args.retries, client_name="backend ping") as client:
            rtt = client.ping("ping")
            result: dict[str, object] = {"ok": True, "url": info.url, "rtt_ms": round(rtt * 1000, 3)}
            if args.hello:
                hello = client.hello()
                result.update(protocol_version=hello.protocol_version, server_version=hello.server_version,
                              device=hello.device_status, gpu_name=hello.gpu_name, pid=hello.pid)
    except ProtocolError as exc:
        print(json.dumps({"ok": False, "error": exc.ename, "message": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main_serve())

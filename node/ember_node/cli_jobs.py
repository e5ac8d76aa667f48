"""``ember job``: submit a command to run on the cluster's head, and follow, stop, list jobs.

    ember job submit [--address HOST:PORT] [--working-dir DIR] [--runtime-env-json JSON | --runtime-env FILE]
                     [--submission-id ID] [--metadata-json JSON] [--no-wait] -- python script.py args
    ember job status ID          ember job logs ID [--follow]
    ember job stop ID [--no-wait]    ember job list [--json]    ember job delete ID

The address is the head's gRPC port (``--address``, else ``EMBER_ADDRESS``, else the head
``ember start`` started here); the token ``EMBER_TOKEN`` (else that head's token file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ember.job_submission import JobDetails, JobStatus, JobSubmissionClient


def add_parsers(sub: Any) -> None:
    """The ``job`` command and its subcommands, on the ``ember`` parser's subparsers."""
    job = sub.add_parser("job", help="submit and manage jobs run on the head")
    jsub = job.add_subparsers(dest="job_command", required=True)

    def with_address(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--address", default=None,
                       help="the head's HOST:PORT (default: EMBER_ADDRESS, else the head started here)")
        return p

    p = with_address(jsub.add_parser("submit", help="run a command on the head as a driver of the cluster"))
    p.add_argument("--working-dir", default=None, help="upload this directory; the command runs in it")
    p.add_argument("--runtime-env-json", default=None,
                   help='runtime_env as JSON, e.g. \'{"env_vars": {"A": "1"}, "excludes": ["*.log"]}\'')
    p.add_argument("--runtime-env", default=None, metavar="FILE",
                   help="runtime_env from a YAML or JSON file (--runtime-env-json wins where both say)")
    for flag in ("--entrypoint-num-cpus", "--entrypoint-num-gpus", "--entrypoint-memory"):
        p.add_argument(flag, type=float, default=None, help="not supported yet (refused when set)")
    p.add_argument("--entrypoint-resources", default=None, help="not supported yet (refused when set)")
    p.add_argument("--submission-id", default=None, help="the job's id (default: a new one)")
    p.add_argument("--metadata-json", default=None, help='metadata as JSON, e.g. \'{"owner": "me"}\'')
    p.add_argument("--no-wait", action="store_true", help="return once submitted; do not follow the logs")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- the command, e.g. -- python script.py")
    for name, text in (("status", "a job's status"), ("delete", "forget an ended job and its logs")):
        with_address(jsub.add_parser(name, help=text)).add_argument("submission_id")
    p = with_address(jsub.add_parser("logs", help="what a job printed"))
    p.add_argument("submission_id")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p = with_address(jsub.add_parser("stop", help="stop a job (SIGTERM, then SIGKILL)"))
    p.add_argument("submission_id")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the job to end")
    p = with_address(jsub.add_parser("list", help="every job the head knows"))
    p.add_argument("--json", action="store_true")


def job_cmd(args: argparse.Namespace) -> int:
    """Run ``ember job <subcommand>``; the exit status."""
    try:
        with JobSubmissionClient(args.address) as client:
            return _COMMANDS[args.job_command](client, args)
    except RuntimeError as exc:
        print(f"ember job {args.job_command}: {exc}", file=sys.stderr)
        return 1


def _json_arg(text: str | None, flag: str) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{flag} is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def _env_file(path: str | None) -> dict:
    """A runtime_env from a YAML (or, named ``.json``, JSON) file."""
    if path is None:
        return {}
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        env = _json_arg(text, f"--runtime-env {path}")
    else:
        try:
            import yaml
        except ImportError:
            raise ValueError(f"--runtime-env {path}: reading YAML needs pyyaml (pip install pyyaml); "
                             f"or give a .json file or --runtime-env-json") from None
        env = yaml.safe_load(text) or {}
        if not isinstance(env, dict):
            raise ValueError(f"--runtime-env {path} must hold a mapping, e.g. env_vars: {{A: '1'}}")
    return env


def _submit(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    words = list(args.entrypoint)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        print("ember job submit: give the command after --, e.g. `ember job submit -- python script.py`",
              file=sys.stderr)
        return 2
    runtime_env = {**_env_file(args.runtime_env), **_json_arg(args.runtime_env_json, "--runtime-env-json")}
    if args.working_dir is not None:
        runtime_env["working_dir"] = args.working_dir
    sid = client.submit_job(entrypoint=" ".join(words), runtime_env=runtime_env or None,
                            submission_id=args.submission_id,
                            metadata=_json_arg(args.metadata_json, "--metadata-json") or None,
                            entrypoint_num_cpus=args.entrypoint_num_cpus,
                            entrypoint_num_gpus=args.entrypoint_num_gpus,
                            entrypoint_memory=args.entrypoint_memory,
                            entrypoint_resources=_json_arg(args.entrypoint_resources, "--entrypoint-resources"))
    print(f"job {sid} submitted")
    if args.no_wait:
        print(f"  its logs:   ember job logs {sid} --follow\n  its status: ember job status {sid}\n"
              f"  stop it:    ember job stop {sid}")
        return 0
    try:
        _print_follow(client, sid)
    except KeyboardInterrupt:
        print(f"\nno longer following job {sid}; it keeps running (stop it with `ember job stop {sid}`)")
        return 130
    info = client.get_job_info(sid)
    print(f"job {sid} {info.status}: {info.message.splitlines()[0] if info.message else ''}")
    return 0 if info.status == JobStatus.SUCCEEDED else 1


def _print_follow(client: JobSubmissionClient, sid: str) -> None:
    for text in client.follow_job_logs(sid):
        sys.stdout.write(text)
        sys.stdout.flush()


def _status(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    info = client.get_job_info(args.submission_id)
    print(f"job {info.submission_id}: {info.status}")
    if info.message:
        print(f"  {info.message}")
    return 0


def _logs(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    if args.follow:
        try:
            _print_follow(client, args.submission_id)
        except KeyboardInterrupt:
            return 130
    else:
        sys.stdout.write(client.get_job_logs(args.submission_id))
    return 0


def _stop(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    if not client.stop_job(args.submission_id):
        print(f"job {args.submission_id} had already ended ({client.get_job_status(args.submission_id)})")
        return 0
    print(f"stopping job {args.submission_id}")
    if args.no_wait:
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get_job_status(args.submission_id)
        if status.is_terminal():
            print(f"job {args.submission_id} {status}")
            return 0
        time.sleep(0.2)
    print(f"job {args.submission_id} has not ended within 60 s", file=sys.stderr)
    return 1


def _delete(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    client.delete_job(args.submission_id)
    print(f"job {args.submission_id} deleted")
    return 0


def _row(j: JobDetails) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.start_time / 1000)) if j.start_time else "-"
    return f"{j.submission_id:36} {j.status.value:10} {started:19}  {j.entrypoint}"


def _list(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    jobs = client.list_jobs()
    if args.json:
        print(json.dumps([{**vars(j), "status": j.status.value} for j in jobs], indent=2))
        return 0
    if not jobs:
        print("no jobs")
        return 0
    print(f"{'SUBMISSION ID':36} {'STATUS':10} {'STARTED':19}  ENTRYPOINT")
    for j in jobs:
        print(_row(j))
    return 0


_COMMANDS = {"submit": _submit, "status": _status, "logs": _logs, "stop": _stop, "delete": _delete,
             "list": _list}

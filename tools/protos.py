"""Generate the protobuf/gRPC modules from protos/ (``make protos``), or check they are current.

python tools/protos.py          # regenerate driver/ember/_proto/
python tools/protos.py --check  # fail when the checked-in code differs from a fresh run
"""

from __future__ import annotations

import pathlib
import re
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "ember" / "v1"
OUT = ROOT / "driver" / "ember" / "_proto"


def generate(out: pathlib.Path) -> dict[str, str]:
    """Run protoc into ``out``; return {file name: text} with imports made package-relative."""
    protos = sorted(str(p) for p in PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    files = {}
    for path in sorted(out.glob("*_pb2*.py*")):
        text = path.read_text()
        text = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", text, flags=re.M)
        files[path.name] = text
    return files


def main() -> int:
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(pathlib.Path(tmp))
    if check:
        current = {p.name: p.read_text() for p in OUT.glob("*_pb2*.py*")}
        if current != fresh:
            stale = sorted(
                set(current) ^ set(fresh) | {k for k in fresh if current.get(k) != fresh[k]}
            )
            print(
                f"generated protobuf code is stale ({', '.join(stale)}); run 'make protos' and commit",
                file=sys.stderr,
            )
            return 1
        print(f"protobuf code is current ({len(fresh)} files)")
        return 0
    for old in OUT.glob("*_pb2*.py*"):
        old.unlink()
    for name, text in fresh.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(fresh)} files to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

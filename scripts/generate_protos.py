"""Regenerate the Python stubs of `protos/` into `service/protocol/`: `python scripts/generate_protos.py`.

Two rewrites follow protoc, both needed for the stubs to live inside a package beside tritonclient:
- the gRPC module imports its message module relatively (protoc writes a top-level import);
- the messages are registered in a descriptor pool of calsurr's own (`service/protocol/_pool.py`, written
  here too), not protobuf's default pool: tritonclient registers the same protocol names
  (`inference.ModelInferRequest`, ...) in the default pool, and protobuf refuses a second, different file
  defining them in one process. One pool for all of our files, so that `grpc_service.proto` finds the
  `model_config.proto` it imports.

`--check` regenerates into a temporary folder and exits 1 when the committed stubs differ.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "service" / "protocol"
# Dependencies first: a file's imports must be in the pool before it.
PROTO_FILES = ("model_config.proto", "grpc_service.proto", "calsurr_card.proto")
POOL_MODULE = "_pool.py"
POOL_SOURCE = '''"""The descriptor pool of calsurr's protocol stubs (written by scripts/generate_protos.py).

Not protobuf's default pool, where tritonclient registers the same protocol names.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
'''
PRIVATE_POOL = "_private_pool.POOL"
IMPORT_POOL = "from . import _pool as _private_pool\n"


def _generate_into(out_dir: Path) -> list[Path]:
    include = Path(protoc.__file__).resolve().parent / "_proto"
    for name in PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(PROTO_DIR / name),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {name}")
    written = sorted(p for p in out_dir.iterdir() if p.suffix in {".py", ".pyi"})
    for path in written:
        text = path.read_text()
        if "_descriptor_pool.Default()" in text:
            text = text.replace("_descriptor_pool.Default()", PRIVATE_POOL)
            text = text.replace("from google.protobuf import descriptor_pool as _descriptor_pool\n", IMPORT_POOL)
        text = re.sub(r"^import (\w+_pb2) as (\w+)$", r"from . import \1 as \2", text, flags=re.M)
        path.write_text(text)
    pool = out_dir / POOL_MODULE
    pool.write_text(POOL_SOURCE)
    return sorted([*written, pool])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = _generate_into(Path(tmp))
        if args.check:
            stale = [p.name for p in fresh if not filecmp.cmp(p, OUT_DIR / p.name, shallow=False)]
            if stale:
                print(f"stale generated stubs in {OUT_DIR}: {stale}; run scripts/generate_protos.py")
                return 1
            print("generated stubs are up to date")
            return 0
        for path in fresh:
            shutil.copy(path, OUT_DIR / path.name)
            print(f"wrote {OUT_DIR / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the committed Python modules from ``proto/*.proto``.

``python -m metastore.api.grpc.codegen`` (or ``make protos``) rewrites
them in place; ``generate(out_root)`` writes them under another root and
``descriptor_set`` gives what they must embed, which is how a test proves
that the committed modules match the ``.proto`` files.
Needs ``grpcio-tools`` (the ``dev`` extra), which the installed server does
not.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "proto"
SOURCE_ROOT = PROTO_DIR.parents[3]
"""The directory that holds ``metastore/``: protoc's import root, so the
generated modules import each other as ``metastore.api.grpc.proto.*``."""
MESSAGE_PROTOS = ("kv.proto", "auth.proto", "rpc.proto")
SERVICE_PROTOS = ("rpc.proto",)


def _relative(name: str) -> str:
    return str((PROTO_DIR / name).relative_to(SOURCE_ROOT))


def generate(out_root: Path) -> list[Path]:
    """Write the generated modules under ``out_root`` (mirroring
    ``metastore/api/grpc/proto/``) and return their paths, sorted.  Raises
    ``RuntimeError`` with protoc's status when it fails."""
    from grpc_tools import protoc

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    include = f"-I{SOURCE_ROOT}"
    runs = [
        [include, f"--python_out={out_root}", f"--pyi_out={out_root}", *map(_relative, MESSAGE_PROTOS)],
        [include, f"--grpc_python_out={out_root}", *map(_relative, SERVICE_PROTOS)],
    ]
    for args in runs:
        status = protoc.main(["protoc", *args])
        if status != 0:
            raise RuntimeError(f"protoc {' '.join(args)} exited with {status}")
    target = out_root / PROTO_DIR.relative_to(SOURCE_ROOT)
    return sorted(p for p in target.iterdir() if p.suffix in (".py", ".pyi") and p.name != "__init__.py")


def descriptor_set(out_root: Path) -> bytes:
    """The serialized ``FileDescriptorSet`` protoc builds from the
    ``.proto`` files (written under ``out_root``): what the generated modules
    embed, independent of the generator's version."""
    from grpc_tools import protoc

    out = Path(out_root) / "descriptors.pb"
    args = [f"-I{SOURCE_ROOT}", f"--descriptor_set_out={out}", *map(_relative, MESSAGE_PROTOS)]
    status = protoc.main(["protoc", *args])
    if status != 0:
        raise RuntimeError(f"protoc {' '.join(args)} exited with {status}")
    return out.read_bytes()


def main() -> None:
    """Regenerate the modules next to the ``.proto`` files and list them."""
    for path in generate(SOURCE_ROOT):
        print(path.relative_to(SOURCE_ROOT))


if __name__ == "__main__":
    sys.exit(main())

"""Build wsuv._core: every csrc/*.c in one cffi extension (out-of-line API mode).

The declarations Python may call live in csrc/ffi/*.cdef, one file per layer,
so that each layer's contract with Python sits beside its C header.
libuv, http-parser, hiredis, zlib and OpenSSL come from the system; the static archives of
the first three are linked in when present (zlib and OpenSSL are linked shared: libz.so.1
and libssl.so.3 are on every Debian system).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"


class MissingLibrary(SystemExit):
    """A system library is missing: one sentence naming the Debian package."""


def _compiler() -> str:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"


def _print_file_name(name: str) -> str | None:
    """Where the compiler would find a library file, or None."""
    try:
        out = subprocess.run(
            [_compiler(), f"-print-file-name={name}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out if os.path.isabs(out) and os.path.exists(out) else None


def _links_shared(archive: str, symbol: str) -> bool:
    """True if ``archive`` can go into a shared object (its objects are PIC)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(f"extern char {symbol}(void);\n"
                    f"void *wsuv_probe(void) {{ return (void *){symbol}; }}\n")
        cmd = [_compiler(), "-shared", "-fPIC", "-o", os.path.join(tmp, "probe.so"), src, archive,
               "-lpthread", "-ldl", "-lrt"]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def _pkg_config(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["pkg-config", *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _has_header(name: str, extra_dirs: list[str]) -> bool:
    dirs = [*extra_dirs, "/usr/include", "/usr/local/include"]
    return any(os.path.exists(os.path.join(d, name)) for d in dirs)


def _libuv() -> tuple[list[str], list[str], list[str], list[str]]:
    """(include_dirs, extra_objects, libraries, library_dirs) for libuv."""
    if _pkg_config("--exists", "libuv") is None:
        raise MissingLibrary(
            "wsuv needs libuv >= 1.44 and pkg-config: install the Debian packages "
            "'libuv1-dev pkg-config' (apt-get install libuv1-dev pkg-config)."
        )
    incs = [f[2:] for f in (_pkg_config("--cflags-only-I", "libuv") or "").split()]
    libdir = _pkg_config("--variable=libdir", "libuv") or ""
    static = os.path.join(libdir, "libuv_a.a")
    if (os.path.exists(static) and not os.environ.get("WSUV_SHARED_LIBS")
            and _links_shared(static, "uv_loop_init")):
        return incs, [static], ["pthread", "dl", "rt"], []
    return incs, [], ["uv"], [libdir] if libdir else []


def _zlib() -> list[str]:
    """libraries for zlib (permessage-deflate): the system's shared libz."""
    if not _has_header("zlib.h", []):
        raise MissingLibrary(
            "wsuv needs zlib for permessage-deflate: install the Debian package "
            "'zlib1g-dev' (apt-get install zlib1g-dev)."
        )
    return ["z"]


def _http_parser() -> tuple[list[str], list[str], list[str]]:
    """(extra_objects, libraries, library_dirs) for the Node.js http-parser."""
    if not _has_header("http_parser.h", []):
        raise MissingLibrary(
            "wsuv needs the Node.js http-parser: install the Debian package "
            "'libhttp-parser-dev' (apt-get install libhttp-parser-dev)."
        )
    static = _print_file_name("libhttp_parser.a")
    if (static and not os.environ.get("WSUV_SHARED_LIBS")
            and _links_shared(static, "http_parser_execute")):
        return [static], [], []
    shared = _print_file_name("libhttp_parser.so")
    if shared is None:
        raise MissingLibrary(
            "http_parser.h is present but libhttp_parser is not: install the Debian "
            "package 'libhttp-parser-dev'."
        )
    return [], ["http_parser"], [os.path.dirname(shared)]


# Layers in dependency order: a cdef may use types declared by earlier ones.
LAYERS = ["sha1", "csprng", "utf8", "wsframe", "wsparser", "collect", "handshake", "clienths",
          "pmdeflate", "wsconn", "tls", "loop", "server", "client", "client_direct", "capp",
          "topics", "redisproto", "redisseq", "busproto", "workerbus", "bushub", "pubsub"]
# The public header of C applications (capp.c implements its host side).
APP_INCLUDE = HERE / "wsuv" / "include"


def _cdef() -> str:
    files = sorted((CSRC / "ffi").glob("*.cdef"), key=lambda p: (
        LAYERS.index(p.stem) if p.stem in LAYERS else len(LAYERS), p.stem))
    return "\n".join(p.read_text() for p in files)


def _hiredis() -> tuple[list[str], list[str], list[str]]:
    """(extra_objects, libraries, library_dirs) for hiredis (the Redis bridge)."""
    if not _has_header("hiredis/async.h", []):
        raise MissingLibrary(
            "wsuv needs hiredis for its Redis bridge: install the Debian package "
            "'libhiredis-dev' (apt-get install libhiredis-dev)."
        )
    static = _print_file_name("libhiredis.a")
    if (static and not os.environ.get("WSUV_SHARED_LIBS")
            and _links_shared(static, "redisAsyncConnect")):
        return [static], [], []
    shared = _print_file_name("libhiredis.so")
    if shared is None:
        raise MissingLibrary(
            "hiredis/async.h is present but libhiredis is not: install the Debian "
            "package 'libhiredis-dev'."
        )
    return [], ["hiredis"], [os.path.dirname(shared)]


def _openssl() -> list[str]:
    """libraries for OpenSSL 3 (TLS): the system's shared libssl and libcrypto."""
    if not _has_header("openssl/ssl.h", []):
        raise MissingLibrary(
            "wsuv needs OpenSSL 3 for TLS: install the Debian package "
            "'libssl-dev' (apt-get install libssl-dev)."
        )
    return ["ssl", "crypto"]


def _sources() -> list[str]:
    return [os.path.relpath(p, HERE) for p in sorted(CSRC.glob("*.c"))]


def _headers() -> str:
    # *_int.h are a layer's private headers (the transport's includes uv.h).
    return "\n".join(f'#include "{p.name}"' for p in sorted(CSRC.glob("*.h"))
                     if not p.name.endswith("_int.h"))


def make_builder() -> FFI:
    uv_incs, uv_objs, uv_libs, uv_dirs = _libuv()
    hp_objs, hp_libs, hp_dirs = _http_parser()
    z_libs = _zlib()
    ssl_libs = _openssl()
    hr_objs, hr_libs, hr_dirs = _hiredis()
    debug = bool(os.environ.get("WSUV_DEBUG"))
    cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]
    # cffi's own generated glue trips a few of -Wextra's checks; keep them quiet there.
    cflags += ["-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer"] if debug else ["-O3"]
    extra_link: list[str] = []
    sanitize = os.environ.get("WSUV_SANITIZE")
    if sanitize:
        cflags += [f"-fsanitize={sanitize}", "-fno-sanitize-recover=undefined"]
        extra_link += [f"-fsanitize={sanitize}"]
    ffi = FFI()
    ffi.cdef(_cdef())
    ffi.set_source(
        "wsuv._core",
        _headers(),
        sources=_sources(),
        include_dirs=[str(CSRC), str(APP_INCLUDE), *uv_incs],
        extra_compile_args=cflags,
        extra_link_args=extra_link,
        extra_objects=uv_objs + hp_objs + hr_objs,
        # dl: capp.c loads C applications
        libraries=uv_libs + hp_libs + hr_libs + z_libs + ssl_libs + ["dl"],
        library_dirs=uv_dirs + hp_dirs + hr_dirs,
    )
    return ffi


try:
    ffibuilder = make_builder()
except MissingLibrary as exc:
    print(f"wsuv build error: {exc}", file=sys.stderr)
    raise

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

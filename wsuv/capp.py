"""Applications in C, loaded at run time (``wsuv_app.h``, ``csrc/capp.h``).

``load_c_app("app.so")`` loads a shared library that exports ``wsuv_app_init``;
the :class:`CApp` it returns is a handler that :class:`wsuv.Server` runs with
no Python per event. ``wsuv-serve app.c`` compiles the source first, into a
cache keyed by its content and the ABI version (:func:`compile_c_app`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys

from wsuv._core import ffi, lib
from wsuv.exceptions import WsuvError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

app_log = logging.getLogger("wsuv.app")

#: The ABI version of this build's ``wsuv_app.h`` (``WSUV_APP_ABI_VERSION``).
ABI_VERSION = int(lib.ws_capp_abi_version())
_ERR_CAP = 1024


class CAppError(WsuvError):
    """A C application cannot be built or loaded; the message is one sentence."""


def get_include() -> str:
    """The directory holding ``wsuv_app.h`` (compile with ``-I`` this)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def wsuv_capp_log(_ctx: Any, level: int, name: Any, msg: Any, length: int) -> None:
    """host->log of every C application: a line for the ``wsuv.app`` logger."""
    text = ffi.unpack(msg, length).decode("utf-8", "replace")
    if name != ffi.NULL:
        text = f"{ffi.string(name).decode('utf-8', 'replace')}: {text}"
    app_log.log(level, "%s", text)


ffi.def_extern(name="wsuv_capp_log")(wsuv_capp_log)


class CApp:
    """A loaded C application: pass it to :class:`wsuv.Server` as the handler.

    It serves one server at a time. :meth:`close` (or garbage collection)
    calls the application's ``on_destroy`` and unloads the library.
    """

    _wsuv_c_app = True  # what resolve_handler and Server look for

    def __init__(self, path: str, arg: str = "") -> None:
        self.path = os.path.abspath(path)
        self.arg = arg
        if not os.path.exists(self.path):
            raise CAppError(f"cannot load the C application {path}: no such file")
        err = ffi.new("char[]", _ERR_CAP)
        ptr = lib.ws_capp_open(self.path.encode(), arg.encode(), lib.wsuv_capp_log, ffi.NULL,
                               err, _ERR_CAP)
        if ptr == ffi.NULL:
            raise CAppError(ffi.string(err).decode("utf-8", "replace"))
        self._ptr: Any = ffi.gc(ptr, lib.ws_capp_free)
        self.name = ffi.string(lib.ws_capp_name(ptr)).decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<CApp {self.name or os.path.basename(self.path)!r} from {self.path!r}>"

    def close(self) -> None:
        """Unload now (``on_destroy``, then ``dlclose``); idempotent."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            if lib.ws_capp_attached(ptr):
                self._ptr = ptr
                raise RuntimeError("a C application cannot be closed while its server runs")
            ffi.release(ptr)

    def _server_new(self, cfg: Any, cb: Any) -> Any:
        """A ws_server running this application (Server.__init__)."""
        if self._ptr is None:
            raise ValueError(f"{self!r} is closed")
        if lib.ws_capp_attached(self._ptr):
            raise RuntimeError(f"{self!r} already serves a server (one at a time)")
        s = lib.ws_capp_server_new(self._ptr, cfg, cb)
        if s == ffi.NULL:
            raise MemoryError("ws_capp_server_new failed")
        return s

    def _detach(self) -> None:
        """The server stopped or will never run (before ws_server_free)."""
        if self._ptr is not None:
            lib.ws_capp_detach(self._ptr)


def load_c_app(path: str, arg: str = "") -> CApp:
    """Load the C application at ``path`` (a ``.so``), passing ``arg`` to its
    ``wsuv_app_init``. Raises :class:`CAppError` with one sentence if it
    cannot: no such file, not a shared object, no ``wsuv_app_init``, another
    ABI version, or init refused (with its reason)."""
    return CApp(path, arg)


# -- compiling ``app.c`` -------------------------------------------------------

def cache_dir() -> str:
    """Where compiled applications are kept: ``$XDG_CACHE_HOME/wsuv`` or ``~/.cache/wsuv``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "wsuv")


def _compiler() -> list[str]:
    cc = shlex.split(os.environ.get("CC", "")) or ["cc"]
    if shutil.which(cc[0]) is None:
        raise CAppError(f"no C compiler ({cc[0]}) found to build the C application: install "
                        f"gcc (Debian: apt-get install build-essential), or set CC")
    return cc


def compile_c_app(source: str, cache: str | None = None) -> str:
    """Compile ``source`` into a shared library in the cache and return its path.

    The library's name holds a hash of the source's bytes, the ABI version and
    the command, so the second start with the same source loads it without
    compiling. (A header the source includes is not part of the key: edit the
    ``.c`` or empty the cache after changing one.) A compile error raises
    :class:`CAppError` whose message holds the compiler's output.
    """
    try:
        with open(source, "rb") as f:
            code = f.read()
    except OSError as exc:
        raise CAppError(f"cannot read the C application {source}: {exc.strerror}") from None
    cc = _compiler()
    flags = ["-O2", "-shared", "-fPIC", f"-I{get_include()}"]
    key = hashlib.sha256(b"\0".join([code, str(ABI_VERSION).encode(),
                                     " ".join(cc + flags).encode()])).hexdigest()[:24]
    where = cache or cache_dir()
    stem = os.path.splitext(os.path.basename(source))[0]
    target = os.path.join(where, f"{stem}-abi{ABI_VERSION}-{key}.so")
    if os.path.exists(target):
        return target
    try:
        os.makedirs(where, exist_ok=True)
    except OSError as exc:
        raise CAppError(f"cannot create the cache directory {where}: {exc.strerror}") from None
    # Built under a private name, then renamed: a concurrent start never
    # loads half a file.
    tmp = f"{target}.{os.getpid()}.tmp"
    cmd = [*cc, *flags, "-o", tmp, os.path.abspath(source)]
    logging.getLogger("wsuv").info("compiling %s into %s", source, target)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise CAppError(f"cannot run the C compiler {cc[0]}: {exc.strerror}") from None
    if out.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        messages = (out.stderr + out.stdout).rstrip()
        raise CAppError(f"{messages}\ncompiling the C application {source} failed "
                        f"({shlex.join(cmd)})")
    os.replace(tmp, target)
    return target


def cli_load(app: str, arg: str) -> CApp:
    """``wsuv-serve app.so|app.c``: the loaded application, or SystemExit with
    the reason (one line, no traceback; a compile error adds the compiler's
    messages before it)."""
    try:
        return load_c_app(compile_c_app(app) if app.endswith(".c") else app, arg)
    except CAppError as exc:
        print(f"wsuv-serve: {exc}", file=sys.stderr)
        raise SystemExit(1) from None

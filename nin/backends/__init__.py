"""One package per chapter tab, imported only when asked for.

`get_backend("torch")` imports `nin.backends.torch` (and so PyTorch) on first use and caches
it; a framework that is missing or fails to import raises `BackendUnavailableError` for that
backend alone, and the other backends keep working.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["BACKENDS", "CLASSIC_TABS", "BackendUnavailableError", "get_backend",
           "available_backends", "resolve_backends"]  # fmt: skip

# backend name -> (framework package, pip extra that installs it)
BACKENDS = {
    "torch": ("torch", "torch"),
    "mxnet": ("mxnet", "mxnet"),
    "tensorflow": ("tensorflow", "tensorflow"),
    "jax": ("jax", "jax"),
}
# the backends with the classic editions' API (`train_ch6` and its friends, nin.classic):
# d2l-en 0.17 and d2l-zh 2.0 have PyTorch, MXNet and TensorFlow tabs, and no JAX one
CLASSIC_TABS = ("torch", "mxnet", "tensorflow")
_ALIASES = {"pytorch": "torch", "tf": "tensorflow", "mx": "mxnet"}
_loaded: dict[str, ModuleType] = {}


class BackendUnavailableError(ImportError):
    """The backend's framework is not installed or failed to import."""


def _canonical(name: str) -> str:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; valid backends are "
            f"{', '.join(BACKENDS)} (or 'all' on the command line)"
        )
    return key


def get_backend(name: str) -> ModuleType:
    """The backend module for `name` ('torch', 'mxnet', 'tensorflow'; 'pytorch'/'tf' too)."""
    key = _canonical(name)
    if key not in _loaded:
        framework, extra = BACKENDS[key]
        try:
            _loaded[key] = importlib.import_module(f"nin.backends.{key}")
        except ImportError as err:
            raise BackendUnavailableError(
                f"backend {key!r} is unavailable: importing {framework} failed ({err}). "
                f"Install it with `pip install -e .[{extra}]`, or pick another backend "
                f"from {', '.join(BACKENDS)}."
            ) from err
    return _loaded[key]


def available_backends() -> list[str]:
    """Backends whose framework is installed (found on the path; not imported here)."""
    found = []
    for key, (framework, _) in BACKENDS.items():
        try:
            if importlib.util.find_spec(framework) is not None:
                found.append(key)
        except (ImportError, ValueError):  # a None entry in sys.modules or a broken package
            pass
    return found


def resolve_backends(names: str | list[str]) -> list[str]:
    """'all', 'torch,tf' or a list -> canonical names in a stable order, validated."""
    if isinstance(names, str):
        names = list(BACKENDS) if names == "all" else names.split(",")
    return [_canonical(n.strip()) for n in names if n.strip()]

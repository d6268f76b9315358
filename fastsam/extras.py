"""Optional dependencies: which ``pip install "fastsam-torch[EXTRA]"`` brings which package, and the error that
says so. Optional packages are imported lazily, where a feature needs them, through :func:`import_optional`."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from fastsam.errors import MissingDependencyError

DISTRIBUTION = "fastsam-torch"  # the name on PyPI (the import name is fastsam)

#: Top-level import names each extra of pyproject.toml provides (kept in step by tests/test_cli.py).
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {
    "text": ("transformers",),
    "ray": ("ray", "pandas", "pyarrow"),
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "openvino": ("openvino", "nncf"),
    "serve": ("fastapi", "uvicorn", "multipart", "python_multipart"),
    "train": ("matplotlib", "scipy"),
    "eval": ("scipy",),
    "compat": ("supervision",),
    "test": ("pytest", "httpx", "playwright"),
}

_NO_MODULE = re.compile(r"No module named '([\w.]+)'")

#: The extra a command's missing package most likely belongs to, when several extras provide it.
COMMAND_EXTRAS = {"train": "train", "bench": "eval", "serve": "serve", "batch": "ray", "export": "onnx"}


def extra_for(package: str, command: str | None = None) -> str | None:
    """The extra that provides the top-level ``package`` (preferring ``command``'s own extra), or None."""
    extras = [extra for extra, packages in EXTRA_PACKAGES.items() if package in packages]
    preferred = COMMAND_EXTRAS.get(command or "")
    return preferred if preferred in extras else (extras[0] if extras else None)


def install_hint(extra: str) -> str:
    """The command that installs an extra, e.g. ``pip install "fastsam-torch[onnx]"``."""
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def _missing(package: str, extra: str, purpose: str) -> MissingDependencyError:
    return MissingDependencyError(f"{purpose} needs the '{package}' package, which is not installed: "
                                  f"{install_hint(extra)}")


def missing_dependency(exc: ImportError, purpose: str, command: str | None = None) -> MissingDependencyError | None:
    """The MissingDependencyError for ``exc`` when it names a package of an extra, else None (a real bug)."""
    # Re-raised from a DataLoader worker, the error keeps only its message (no ``name``).
    named = exc.name or next(iter(_NO_MODULE.findall(str(exc))), "")
    package = named.split(".")[0]
    extra = extra_for(package, command)
    return None if extra is None else _missing(package, extra, purpose)


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` (dotted) from the optional ``extra``, or raise MissingDependencyError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing((exc.name or module).split(".")[0], extra, purpose) from exc

"""archc: a declarative language and compiler for AI machines. This module owns the public
names and where the stage subpackages (archc.dsl, ...) are found; the version is
archc.dsl.version's."""

# Where archc.dsl, archc.codegen, archc.runtime and archc.grammar live. Installed (wheel or
# `pip install .`) they sit inside this package; in the source tree pyproject.toml maps them
# from the sibling folders dsl/, codegen/, runtime/, grammar/ (package-dir). An editable install
# resolves that mapping itself, but a Python started in the repository root imports this
# folder before any installed copy and would find no archc.dsl: so when the stages are not
# here and the siblings are, the repository root joins __path__ (after this folder, whose own
# modules keep precedence), and every stage comes from the same tree as this file.
import os as _os

_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "dsl")) and all(
        _os.path.isfile(_os.path.join(_root, _stage, "__init__.py"))
        for _stage in ("dsl", "codegen", "runtime", "grammar")):
    __path__.append(_root)
del _os, _here, _root

from .dsl.version import __version__  # noqa: E402

__all__ = ["Design", "check", "load", "__version__"]


def __getattr__(name: str):
    """The public API, imported on first use (PEP 562): importing a stage (archc.dsl, ...) does
    not pull in the front door, so the stages never import it, even indirectly."""
    if name in ("Design", "check", "load"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'archc' has no attribute '{name}'")

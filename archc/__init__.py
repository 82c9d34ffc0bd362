"""archc: a declarative language and compiler for AI machines."""
__version__ = "0.1.0"

from .api import Design, check, load  # noqa: E402

__all__ = ["Design", "check", "load", "__version__"]

"""archc's version: in generated code's headers and the compile cache's keys. Defined below the
front door (archc/) so that no stage imports the package's public API to learn it."""
__version__ = "0.1.0"

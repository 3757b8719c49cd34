"""vitrina: cross-modal product search (command-line entry point lives in ``vitrina.cli``)."""

__version__ = "0.1.0"

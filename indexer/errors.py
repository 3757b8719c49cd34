"""Domain exceptions raised by the library.

The edges (CLI, HTTP) translate them into one clear line and an exit code or a 4xx.

    VitrinaError
    ├── CatalogError       a catalog file or row cannot be read
    │   └── VectorsFileError    a file of precomputed vectors is malformed or of another dimension
    ├── ImageError         an image cannot be fetched or decoded
    │   ├── ImageRefusedError   its format is not accepted, or it is not an image at all
    │   └── ImageTooLargeError  over a byte, pixel or shape limit (or a decompression bomb)
    ├── ModelError         a model cannot be loaded, or does not match an index
    ├── IndexFormatError   an index folder is missing, torn or of another version
    ├── IndexLockedError   another process is writing to the index folder
    ├── IndexWriteError    the index folder cannot be written (disk full, read-only, no permission)
    └── QueryError         a query, filter or parameter is invalid
"""

from __future__ import annotations


class VitrinaError(Exception):
    """Base class of every error vitrina raises on purpose."""


class CatalogError(VitrinaError):
    """A catalog file or one of its rows cannot be used."""


class VectorsFileError(CatalogError):
    """A file of precomputed vectors (``indexer.vectors_file``) cannot be used: its format, a bad row, a
    repeated id, or a dimension that is not the model's."""


class ImageError(VitrinaError):
    """An image could not be loaded: missing, refused format, too large, undecodable."""


class ImageRefusedError(ImageError):
    """The content is not an image, or its format is not on the allowlist (HTTP 415)."""


class ImageTooLargeError(ImageError):
    """The image is over a byte, pixel or shape limit, or a decompression bomb (HTTP 413)."""


class ModelError(VitrinaError):
    """A model could not be loaded, or it is not the model an index was built with."""


class IndexFormatError(VitrinaError):
    """An index folder is missing, incomplete, or was written by an incompatible version."""


class IndexLockedError(VitrinaError):
    """Another writer holds the index folder's lock."""


class IndexWriteError(VitrinaError):
    """The index folder cannot be written: no space left, a read-only file system, no permission.

    The last commit is intact; free space (or fix the permissions) and run again."""


class QueryError(VitrinaError):
    """A query, a filter expression or a search parameter is invalid."""


class DatabaseUnavailableError(VitrinaError):
    """The metadata database (PostgreSQL) cannot be reached, or refused the connection (HTTP 503)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver's error can run to many lines), else its type's name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

"""The one thing pyproject.toml cannot say: which packages, including one mapped from another folder.

The bundled demo model lives in the repository's ``data/demo-model`` (trained by ``vitrina train``).
The wheel and the sdist ship that folder as the package ``indexer.bundled`` (``package-dir`` and
``package-data`` in pyproject.toml), so an installed vitrina finds it beside its own code at
``site-packages/indexer/bundled/demo-model`` (``indexer.encoders.loading.BUNDLED_MODEL_DIR``).
A declarative ``packages.find`` cannot list a package whose folder has another name, hence this file;
every other setting is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["indexer*", "search*", "vitrina*"]), "indexer.bundled"])

"""The ``vitrina`` command group; each command lives in ``vitrina.commands`` and registers itself here.

Commands are thin wrappers that parse options, call the library, print.  Library errors (``VitrinaError``)
become one line on stderr and exit status 1.  Torch and the model are imported only inside commands that need them.
"""

from __future__ import annotations


import click

from vitrina.commands import behaviour, compose, demo, index, manage, rerank, search, serve, train, update


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vitrina")
def cli() -> None:
    """vitrina: find products by words, by photo, or both.

    Build an index from a catalog with `vitrina index`, then query it with
    `vitrina search` (or from Python: `from search import SearchEngine`).
    """


for _commands in (index, update, search, manage, demo, train, serve, rerank, compose, behaviour):
    _commands.register(cli)


def main() -> None:
    cli(prog_name="vitrina")


if __name__ == "__main__":
    main()

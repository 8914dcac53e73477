"""`python -m cli.permissions`: the permission table of every service, as docs/security.md shows it.

Each service is built (not started) and its routes' declarations read (visiondock.permissions):
the table is the code's, never written by hand. `--write FILE` replaces the part of FILE between
the markers `<!-- permission-table -->` and `<!-- /permission-table -->`; `--check FILE` exits 1
when that part differs from the code's table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from visiondock.permissions import markdown, service_permissions

START, END = "<!-- permission-table -->", "<!-- /permission-table -->"


def permission_table() -> str:
    """The Markdown table of the annotation, registry and scoring services' routes."""
    from services.annotation.app import create_app as annotation
    from services.registry.app import create_app as registry
    from services.scoring.app import create_app as scoring
    from services.scoring.settings import ScoringSettings
    from visiondock.settings import Settings

    with tempfile.TemporaryDirectory(prefix="visiondock-permissions-") as home:
        common = {"home": Path(home), "log_format": "text", "log_level": "WARNING", "api_keys": "x"}
        apps = [("annotation", annotation(Settings(**common))), ("registry", registry(Settings(**common))),
                ("scoring", scoring(ScoringSettings(**common)))]
        return markdown([(name, service_permissions(app)) for name, app in apps])


def replaced(document: str, table: str) -> str:
    """`document` with the part between the markers replaced by `table`."""
    before, start, rest = document.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the document has no {START} ... {END} markers")
    return f"{before}{START}\n{table}{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.permissions", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="FILE", help="put the table between FILE's markers")
    action.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE's table is not the code's")
    args = parser.parse_args(argv)
    table = permission_table()
    if args.write is not None:
        args.write.write_text(replaced(args.write.read_text(), table))
        return 0
    if args.check is not None:
        current = args.check.read_text()
        if replaced(current, table) != current:
            print(f"{args.check}: the permission table differs from the code's; run "
                  f"`python -m cli.permissions --write {args.check}`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Page code shared by the services' web pages, served by the annotation service to the console
(`/app/common/<name>`) and by the registry to its dashboard (`/dashboard/common/<name>`):
`common.js` (the API key kept in the tab, `api()` and `ApiError`, the DOM helper `h()`, number
formatting), `models.js` (the model views: models, comparisons, training runs; a version's page
in `version.js`, its Test page in `use.js`, what they share in `parts.js`) with `models.css`,
`charts.js` (SVG charts), `numbers.js` (sample
sizes, intervals, caveats), `snippets.js` (the code that calls a model), `words.js` (what the
pages say instead of field names) and the favicon. Services may import `visiondock`, not each
other: the files live here.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from visiondock.errors import NotFound

PAGES = Path(__file__).parent
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".svg": "image/svg+xml"}
# Never cached without revalidation: a new release's page must not run an old script.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def shared_page_file(name: str) -> FileResponse:
    """The shared page file `name` (a plain name of a file in this folder), or NotFound."""
    path = PAGES / name
    if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise NotFound(f"no shared page file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)

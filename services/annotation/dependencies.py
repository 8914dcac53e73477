"""What the annotation service's route modules share: its parts on `app.state`, as route dependencies.

The catalog, the image library, the review queue, label history, suggestions, thumbnails and the
capture status are built once at startup (`app._parts`); curation and dataset import are made per
request, for they record who the caller is. The If-Match header and the caller's name come from
`visiondock.web`, as in every service.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from visiondock.web import caller_name

from .capture_status import CaptureStatus
from .curation import Curation
from .dataset_export import DatasetExporter
from .dataset_import import DatasetImporter
from .history import LabelHistory
from .images import ImageLibrary
from .projects import ProjectCatalog
from .review import ReviewQueue
from .suggestions import Suggestions
from .thumbnails import Thumbnails


async def _catalog(request: Request) -> ProjectCatalog:
    return request.app.state.projects


async def _library(request: Request) -> ImageLibrary:
    return request.app.state.images


async def _queue(request: Request) -> ReviewQueue:
    return request.app.state.review


async def _history(request: Request) -> LabelHistory:
    return request.app.state.history


async def _suggestions(request: Request) -> Suggestions:
    return request.app.state.suggestions


async def _thumbnails(request: Request) -> Thumbnails:
    return request.app.state.thumbnails


async def _capture_status(request: Request) -> CaptureStatus:
    return request.app.state.capture_status


async def _curation(request: Request) -> Curation:
    state = request.app.state
    return Curation(state.images.documents, state.images.blobs, state.projects, state.images,
                    who=caller_name(request))


async def _importer(request: Request) -> DatasetImporter:
    return DatasetImporter(request.app.state.images, request.app.state.projects, who=caller_name(request))


async def _exporter(request: Request) -> DatasetExporter:
    return DatasetExporter(request.app.state.images, request.app.state.projects)


Catalog = Annotated[ProjectCatalog, Depends(_catalog)]
Library = Annotated[ImageLibrary, Depends(_library)]
Queue = Annotated[ReviewQueue, Depends(_queue)]
History = Annotated[LabelHistory, Depends(_history)]
Suggester = Annotated[Suggestions, Depends(_suggestions)]
ThumbnailStore = Annotated[Thumbnails, Depends(_thumbnails)]
Capture = Annotated[CaptureStatus, Depends(_capture_status)]
Curator = Annotated[Curation, Depends(_curation)]
Importer = Annotated[DatasetImporter, Depends(_importer)]
Exporter = Annotated[DatasetExporter, Depends(_exporter)]

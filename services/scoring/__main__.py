from visiondock.serve import serve

from .app import create_app
from .settings import ScoringSettings

# Decided before any session exists, so by what the settings say the service is meant to run on.
serve("scoring", create_app, workers=lambda: (settings := ScoringSettings()).resolved_workers(
    gpu=settings.scoring_require_gpu))

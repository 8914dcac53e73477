from visiondock.serve import serve

from .app import create_app
from .settings import ScoringSettings

serve("scoring", create_app, workers=ScoringSettings().resolved_workers)

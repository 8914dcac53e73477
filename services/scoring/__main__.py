from visiondock.serve import serve

from .app import create_app
from .model import on_gpu
from .settings import ScoringSettings

serve("scoring", create_app, workers=lambda: ScoringSettings().resolved_workers(gpu=on_gpu()))

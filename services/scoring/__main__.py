from visiondock.serve import serve

from .app import create_app

serve("scoring", create_app)

from visiondock.serve import serve

from .app import create_app

serve("annotation", create_app)

from visiondock.serve import serve

from .app import create_app

serve("registry", create_app)

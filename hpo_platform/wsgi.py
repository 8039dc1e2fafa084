"""WSGI entry point (the platform is served by daphne through ``asgi.py``; this is for tools)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
application = get_wsgi_application()

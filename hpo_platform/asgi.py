"""ASGI entry point served by daphne: HTTP now, websockets join in the API issue."""
import os

from channels.routing import ProtocolTypeRouter
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
django_asgi_app = get_asgi_application()

# Plain daphne serves no static files: in development (the embedded default) Django serves
# them; in production a proxy serves `collectstatic`'s STATIC_ROOT.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter({"http": http_app})

"""ASGI entry point served by daphne: HTTP, and the study websockets."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (after Django is set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from accounts.ws_auth import TokenAuthMiddleware  # noqa: E402
from studies.consumers import StudyConsumer  # noqa: E402

# Plain daphne serves no static files: in development (the embedded default) Django serves
# them; in production a proxy serves `collectstatic`'s STATIC_ROOT.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(
            # The session's user first; an API token, when one is sent, replaces it.
            AuthMiddlewareStack(
                TokenAuthMiddleware(URLRouter([path("ws/studies/<int:study_id>/", StudyConsumer.as_asgi())]))
            )
        ),
    }
)

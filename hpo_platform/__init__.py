"""Project package: settings, URLs and the ASGI application of the HPO platform."""

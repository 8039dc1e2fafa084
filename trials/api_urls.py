"""Trials API routes, under /api/v1/ (``trials.api``)."""
from trials import api

urlpatterns = [*api.urlpatterns]

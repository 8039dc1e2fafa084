"""Accounts API routes, under /api/v1/ (``accounts.api``)."""
from accounts import api

urlpatterns = [*api.urlpatterns]

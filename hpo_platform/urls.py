"""URL routes: the portal pages (accounts/, studies/, trials/ urls.py), the admin, the REST
API (/api/v1/, schema and docs) and /healthz."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hpo_platform import views

admin.site.site_header = "HPO platform administration"
admin.site.site_title = "HPO platform"

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("", include("studies.urls")),
    path("", include("trials.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("hpo_platform.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", views.healthz, name="healthz"),
]

"""URL routes: the admin and a landing page now; the API and the portal join in later issues."""
from django.contrib import admin
from django.urls import path

from hpo_platform import views

admin.site.site_header = "HPO platform administration"
admin.site.site_title = "HPO platform"

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
]

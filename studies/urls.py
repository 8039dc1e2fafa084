"""The studies pages (docs/portal.md), included at the site root."""
from django.urls import path

from studies import views

app_name = "studies"
urlpatterns = [
    path("studies/", views.study_list, name="list"),
    path("studies/new/", views.study_new, name="new"),
    path("studies/<int:study_id>/", views.study_detail, name="detail"),
    path("studies/<int:study_id>/start/", views.study_start_view, name="start"),
    path("studies/<int:study_id>/cancel/", views.study_cancel_view, name="cancel"),
]

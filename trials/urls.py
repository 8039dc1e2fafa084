"""Trial portal pages (docs/portal.md), included at the site root."""
from django.urls import URLPattern, path

from trials import views

app_name = "trials"
urlpatterns: list[URLPattern] = [
    path("studies/<int:study_id>/trials/<int:number>/", views.trial_detail, name="detail"),
    path("studies/<int:study_id>/compare/", views.trial_compare, name="compare"),
]

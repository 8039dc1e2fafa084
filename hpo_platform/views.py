"""The landing page. The portal itself (study pages, 3D viewer) is not built yet and says so."""
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")

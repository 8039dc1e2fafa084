"""Studies API routes, under /api/v1/: studies and their actions, progress and log
(``studies.api``), plots (``studies.api_plots``), data sets and uploads
(``studies.api_datasets``)."""
from studies import api, api_datasets, api_plots

urlpatterns = [*api.urlpatterns, *api_plots.urlpatterns, *api_datasets.urlpatterns]

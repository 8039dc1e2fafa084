"""Training on RunPod serverless GPUs: the worker that a RunPod endpoint runs.

``handler`` is the serverless handler (``python -m runpod_service.handler``): it takes a
``TrialSpec``, trains it with ``workers.engine`` (and nothing of Django), streams the trial's
messages and ends with its ``TrialResult``. ``emulator`` serves RunPod's cloud routes on
loopback and runs that handler in worker processes, for development and tests. See README.md.
"""

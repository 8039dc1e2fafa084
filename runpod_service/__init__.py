"""Placeholder: the RunPod serverless handler is not built yet; it comes in a later release.

It will hold the handler that a RunPod serverless endpoint runs (``runpod.serverless.start``):
it takes a trial specification, trains the candidate with ``workers.engine`` (which it may
import, and nothing of Django), streams progress back and honours cancellation. Nothing in
the platform imports this package today.
"""

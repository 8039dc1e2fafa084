"""What a trial cost: cloud GPU seconds priced by the workspace's GPU type
(``HPO_GPU_PRICES``, dollars per GPU-hour). Local trials run on the platform's own
machines and cost nothing here."""
from __future__ import annotations

from django.conf import settings

from trials.models import Trial

CLOUD_EXECUTOR = "runpod"


def gpu_price(workspace_id: int | None) -> tuple[str, float] | None:
    """The workspace's GPU type and its $/GPU-hour, or ``None`` when either is unknown."""
    from accounts.models import CloudCredentials

    gpu_type = CloudCredentials.objects.filter(workspace_id=workspace_id).values_list("gpu_type", flat=True).first()
    price = settings.HPO_GPU_PRICES.get(gpu_type or "")
    return (gpu_type, float(price)) if gpu_type and price is not None else None


def trial_cost_usd(trial: Trial) -> float | None:
    """What a cloud trial cost in dollars (0 for a local one; ``None``: no price known)."""
    if trial.executor != CLOUD_EXECUTOR:
        return 0.0
    price = gpu_price(trial.study.workspace_id)
    return None if price is None else round(trial.gpu_seconds / 3600 * price[1], 4)

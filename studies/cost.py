"""What a study cost: its cloud trials' GPU seconds, priced as ``trials.cost`` prices one."""
from __future__ import annotations

from typing import Any

from django.db.models import Sum

from studies.models import Study
from trials.cost import CLOUD_EXECUTOR, gpu_price
from trials.models import Trial


def study_cost(study: Study) -> dict[str, Any]:
    """The study's cloud GPU seconds, the price used and the dollars (``usd`` ``None`` when no
    price is known). Local trials run on the platform's own machines and cost nothing here."""
    seconds = Trial.objects.filter(study=study, executor=CLOUD_EXECUTOR).aggregate(s=Sum("gpu_seconds"))["s"] or 0.0
    price = gpu_price(study.workspace_id)
    return {
        "gpu_seconds": seconds,
        "gpu_type": price[0] if price else None,
        "usd_per_gpu_hour": price[1] if price else None,
        "usd": round(seconds / 3600 * price[1], 4) if price else None,
    }

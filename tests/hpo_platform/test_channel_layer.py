"""The Redis channel layer as configured keeps an idle receiver alive (an idle websocket)."""
from __future__ import annotations

import asyncio
import time

from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from hpo_platform.settings import redis_channel_layer


def test_an_idle_receive_outlives_redis_blocking_timeout_and_then_gets_its_message() -> None:
    layer = RedisChannelLayer(**redis_channel_layer("redis://127.0.0.1:6379/7")["CONFIG"])  # type: ignore[arg-type]

    async def scenario() -> tuple[float, dict]:
        channel = await layer.new_channel()
        started = time.monotonic()

        async def send_late() -> None:
            await asyncio.sleep(6.5)  # past the 5 s a blocking read used to survive
            await layer.send(channel, {"type": "late.message"})

        sender = asyncio.ensure_future(send_late())
        message = await asyncio.wait_for(layer.receive(channel), timeout=20)
        await sender
        await layer.flush()
        return time.monotonic() - started, message

    waited, message = async_to_sync(scenario)()
    assert message["type"] == "late.message"
    assert waited >= 6

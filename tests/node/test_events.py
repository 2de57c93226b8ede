"""The node's event feed: bounded, ordered, never blocking the publisher."""

import asyncio

import pytest

from oasis.node.events import EventBus, TooManySubscribers


async def test_subscriber_gets_events_in_order_filtered_by_prefix() -> None:
    bus = EventBus(clock=lambda: 5.0)
    chat = bus.subscribe(["chat"])
    every = bus.subscribe()
    bus.publish("chat.message", {"text": "hi"})
    bus.publish("stream.started", {"stream": "s"})
    bus.publish("chatter", {})  # not under the "chat" prefix
    ev = await chat.get(timeout=1)
    assert (ev.seq, ev.kind, ev.data, ev.time) == (1, "chat.message", {"text": "hi"}, 5.0)
    assert chat.get_nowait() is None
    assert [e.kind for e in [every.get_nowait(), every.get_nowait(), every.get_nowait()] if e] == [
        "chat.message", "stream.started", "chatter"]


async def test_slow_subscriber_loses_oldest_and_is_told() -> None:
    bus = EventBus(queue_cap=3)
    sub = bus.subscribe()
    for i in range(10):
        bus.publish("x", {"i": i})
    lag = await sub.get(timeout=1)
    assert lag.kind == "lagged" and lag.data == {"dropped": 7} and lag.seq == 0
    assert [(await sub.get(timeout=1)).data["i"] for _ in range(3)] == [7, 8, 9]
    assert bus.dropped == 7 and sub.pending() == 0


async def test_waiting_reader_wakes_and_close_ends_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    got: list[int] = []

    async def read() -> None:
        async for ev in sub:
            got.append(ev.data["n"])

    task = asyncio.create_task(read())
    await asyncio.sleep(0)
    bus.publish("a", {"n": 1})
    bus.publish("a", {"n": 2})
    await asyncio.sleep(0)
    bus.close()
    await asyncio.wait_for(task, 1)
    assert got == [1, 2] and bus.subscribers == 0
    with pytest.raises(TimeoutError):
        await bus.subscribe().get(timeout=0.01)


def test_subscriptions_are_capped_and_kinds_checked() -> None:
    bus = EventBus(max_subscribers=2)
    bus.subscribe()
    s = bus.subscribe()
    with pytest.raises(TooManySubscribers):
        bus.subscribe()
    s.close()
    bus.subscribe()
    with pytest.raises(ValueError):
        bus.publish("", {})
    with pytest.raises(ValueError):
        bus.publish("k" * 65, {})


async def test_waiting_for_the_subscriber_count() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    waiter = asyncio.create_task(bus.wait_subscribers(lambda n: n == 0, 1))
    with pytest.raises(TimeoutError):  # still one subscriber
        await asyncio.wait_for(asyncio.shield(waiter), 0.05)
    sub.close()
    await asyncio.wait_for(waiter, 1)
    with pytest.raises(TimeoutError):
        await bus.wait_subscribers(lambda n: n == 3, 0.01)

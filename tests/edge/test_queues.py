import asyncio
import threading

from edge.queues import DropQueue


def test_full_queue_drops_and_counts_without_blocking() -> None:
    q: DropQueue[int] = DropQueue(2)
    assert q.put(1) and q.put(2)
    assert not q.put(3)
    assert (q.accepted, q.dropped, len(q)) == (2, 1, 2)
    assert q.get_nowait() == 1 and q.get(timeout=0.1) == 2
    assert q.get(timeout=0.01) is None
    q.put(4)
    assert q.clear() == 1 and q.dropped == 2


async def test_async_consumer_wakes_for_items_from_another_thread() -> None:
    q: DropQueue[int] = DropQueue(100)
    producer = threading.Thread(target=lambda: [q.put(i) for i in range(50)])
    got: list[int] = []

    async def consume() -> None:
        while len(got) < 50:
            got.append(await q.async_get())

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    producer.start()
    await asyncio.wait_for(task, 5)
    producer.join()
    assert got == list(range(50))


def test_close_wakes_a_waiting_thread_and_refuses_new_items() -> None:
    q: DropQueue[int] = DropQueue(4)
    q.put(1)
    results: list[int | None] = []
    t = threading.Thread(target=lambda: results.extend([q.get(5), q.get(5)]))
    t.start()
    q.close()
    t.join(2)
    assert results == [1, None]
    assert not q.put(2) and q.closed

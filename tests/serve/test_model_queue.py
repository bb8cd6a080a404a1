"""Turns at the model: first come first served, a bounded line, leaving the line."""

from __future__ import annotations

import threading

import pytest

from diaproto.apps.serve.model_queue import ModelBusy, ModelQueue

WAIT = 30.0


def test_turns_go_in_arrival_order() -> None:
    queue = ModelQueue(max_waiting=8)
    first = queue.join()
    assert first.wait()  # a free model: the turn is immediate
    order: list[int] = []
    tickets = [queue.join() for _ in range(3)]
    assert queue.stats().waiting == 3 and queue.stats().running == 1

    def take(n: int) -> None:
        assert tickets[n].wait()
        order.append(n)
        tickets[n].release()

    threads = [threading.Thread(target=take, args=(n,)) for n in (2, 0, 1)]
    for thread in threads:
        thread.start()
    first.release()
    for thread in threads:
        thread.join(WAIT)
    assert order == [0, 1, 2]
    stats = queue.stats()
    assert (stats.running, stats.waiting, stats.served) == (0, 0, 4)


def test_a_full_line_refuses_at_once() -> None:
    queue = ModelQueue(max_waiting=2)
    running = queue.join()
    waiting = [queue.join(), queue.join()]
    with pytest.raises(ModelBusy, match="2 requests are already waiting"):
        queue.join()
    assert queue.stats().refused == 1
    waiting[0].withdraw()  # one leaves: there is room again
    assert queue.stats().waiting == 1
    queue.join()
    running.release()
    assert queue.stats().running == 1


def test_leaving_the_line_wakes_the_waiter_with_no_turn() -> None:
    queue = ModelQueue()
    holder = queue.join()
    ticket = queue.join()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(ticket.wait()))
    thread.start()
    ticket.withdraw()
    thread.join(WAIT)
    assert result == [False]
    holder.withdraw()  # a granted turn is kept by withdraw...
    assert queue.stats().running == 1
    with holder:  # ...and given back by release (here through the context manager)
        pass
    holder.release()  # twice is harmless
    assert queue.stats().running == 0


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="slots"):
        ModelQueue(slots=0)


def test_a_stop_signal_leaves_the_line() -> None:
    queue = ModelQueue()
    holder = queue.join()
    ticket = queue.join()
    stop = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(ticket.wait(stop)))
    thread.start()
    stop.set()
    thread.join(WAIT)
    assert result == [False]
    assert queue.stats().waiting == 0
    holder.release()
    assert queue.stats().running == 0

"""Turns at the model: a bounded number of requests admitted, turns first come first served."""

from __future__ import annotations

import threading

import pytest

from diaproto.apps.serve.model_queue import ModelBusy, ModelQueue

WAIT = 30.0


def test_turns_go_in_arrival_order() -> None:
    queue = ModelQueue(max_requests=8)
    first = queue.admit().join()
    assert first.wait()  # a free model: the turn is immediate
    order: list[int] = []
    tickets = [queue.admit().join() for _ in range(3)]
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
    assert (stats.running, stats.waiting, stats.admitted, stats.served) == (0, 0, 4, 4)


def test_the_bound_is_on_requests_and_an_admitted_one_is_never_refused() -> None:
    queue = ModelQueue(max_requests=2)
    a, b = queue.admit(), queue.admit()
    with pytest.raises(ModelBusy, match="2 requests are in progress"):
        queue.admit()
    assert queue.stats().refused == 1
    # Admitted requests queue again for each sentence, however long the line is.
    tickets = [a.join(), b.join(), a.join(), b.join()]
    assert queue.stats().waiting == 3
    for ticket in tickets:
        ticket.release()
    a.close()
    a.close()  # twice is harmless
    assert queue.stats().admitted == 1
    with queue.admit():  # room again; the context manager closes it
        assert queue.stats().admitted == 2
    assert queue.stats().admitted == 1
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.join()


def test_leaving_the_line_wakes_the_waiter_with_no_turn() -> None:
    queue = ModelQueue()
    holder = queue.admit().join()
    ticket = queue.admit().join()
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


def test_a_stop_signal_leaves_the_line() -> None:
    queue = ModelQueue()
    holder = queue.admit().join()
    ticket = queue.admit().join()
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


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="slots"):
        ModelQueue(slots=0)
    with pytest.raises(ValueError, match="max_requests"):
        ModelQueue(max_requests=0)

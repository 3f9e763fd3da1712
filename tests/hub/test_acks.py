"""Acks leave in arrival order, all that became due in one call, and never for an old connection."""

from hub.ingest.acks import AckSequencer


def test_acks_leave_in_arrival_order_in_batches() -> None:
    sent: list[tuple[list[int], int]] = []
    seq = AckSequencer(lambda mids, generation: sent.append((mids, generation)))
    seq.reset(1)
    tokens = [seq.received(mid) for mid in (11, 12, 13, 14, 15)]
    seq.done_many([tokens[1], tokens[3]])  # later messages are safe first: nothing may leave yet
    assert sent == [] and seq.outstanding == 5
    seq.done(tokens[0])  # now 11 and 12 are due, together
    assert sent == [([11, 12], 1)]
    seq.done_many([tokens[4], tokens[2]])
    assert sent == [([11, 12], 1), ([13, 14, 15], 1)]
    assert seq.outstanding == 0 and seq.sent == 5


def test_a_new_connection_forgets_what_was_owed_on_the_old_one() -> None:
    sent: list[tuple[list[int], int]] = []
    seq = AckSequencer(lambda mids, generation: sent.append((mids, generation)))
    seq.reset(1)
    old = [seq.received(mid) for mid in (1, 2)]
    seq.reset(2)  # reconnected: the broker resends 1 and 2
    assert seq.outstanding == 0
    new = seq.received(1)
    seq.done_many(old)  # a spool batch from before the reconnect
    assert sent == []
    seq.done(new)
    assert sent == [([1], 2)]

"""The book between Optuna and Tune: what trains, what is reused, what waits, when proposing stops."""

from __future__ import annotations

import pytest

from samprivacy.sweep.units import Book, Front, Outcome, Proposal, Unit


def ok(*values, trial="t"):
    return Outcome(tuple(values), None, trial)


def test_a_configuration_already_measured_is_reused_not_trained():
    book = Book(budget=3)
    first, units = book.propose(0, "cfg", [0])
    assert units == [Unit(0, "cfg", 0)] and first.duplicate_of is None
    assert book.finish(units[0], ok(0.9, 0.6)) == [0]
    again, units = book.propose(1, "cfg", [0])
    assert units == [] and again.done and again.duplicate_of == 0
    assert again.result() == ([0.9, 0.6], [0.0, 0.0], None)
    assert (book.measured, book.duplicates, book.proposals, book.complete) == (1, 1, 2, 1)


def test_a_configuration_training_now_is_waited_for_and_both_are_done_together():
    book = Book(budget=3)
    first, (unit,) = book.propose(0, "cfg", [0])
    waiting, units = book.propose(1, "cfg", [0])
    assert units == [] and not waiting.done and book.waiting == 1
    assert book.finish(unit, ok(0.8, 0.5)) == [0, 1]
    assert waiting.result()[0] == [0.8, 0.5] and book.waiting == 0
    assert book.close(1) is waiting


def test_another_seed_is_another_unit_and_replicates_average():
    book = Book(budget=2)
    proposal, units = book.propose(0, "cfg", [0, 1, 2])
    assert [u.seed for u in units] == [0, 1, 2]
    assert book.finish(units[0], ok(0.8, 0.5)) == []
    assert book.finish(units[1], ok(0.9, 0.6)) == []
    assert book.finish(units[2], ok(1.0, 0.7)) == [0]
    means, stds, reason = proposal.result()
    assert means == pytest.approx([0.9, 0.6]) and stds == pytest.approx([0.1, 0.1]) and reason is None
    other, units = book.propose(1, "cfg", [3, 4, 5])  # the same settings on other seeds: measured
    assert len(units) == 3 and other.duplicate_of is None and book.measured == 2


def test_a_failed_seed_fails_the_configuration_and_is_never_reused():
    book = Book(budget=3)
    proposal, units = book.propose(0, "cfg", [0, 1])
    book.finish(units[0], ok(0.8, 0.5))
    book.finish(units[1], Outcome(None, "diverged"))
    assert proposal.result() == (None, [], "diverged") and book.failed == 1
    again, units = book.propose(1, "cfg", [0, 1])
    assert [u.seed for u in units] == [1]  # seed 0 is reused, seed 1 trains again
    assert again.duplicate_of is None and book.measured == 2


def test_proposing_stops_at_the_budget_of_measured_configurations():
    book = Book(budget=2)
    for number in range(2):
        _, (unit,) = book.propose(number, f"cfg{number}", [0])
        assert book.stop_reason() is None if number == 0 else book.stop_reason() == ""
        book.finish(unit, ok(0.5, 0.5))
    book.propose(2, "cfg0", [0])  # a duplicate does not count
    assert book.measured == 2 and book.stop_reason() == ""


def test_an_exhausted_finite_space_stops_with_a_clear_reason():
    book = Book(budget=6, space_size=2)
    for number, seed in enumerate([0, 1]):
        book.propose(number, "sgd", [seed])
    assert "holds 2 distinct configurations and every one is measured; 4 of the 6" in book.stop_reason()


def test_a_sampler_that_keeps_repeating_itself_stops_at_the_cap():
    book = Book(budget=3, cap=5)
    _, (unit,) = book.propose(0, "cfg", [0])
    book.finish(unit, ok(0.5, 0.5))
    for number in range(1, 5):
        assert book.stop_reason() is None
        book.propose(number, "cfg", [0])
    assert "made 5 proposals (10 x trials), 4 of them configurations already measured, and found only 1" \
        in book.stop_reason()


def test_a_restart_keeps_decisions_and_takes_up_open_proposals():
    """What a driver rebuilds from the study: finished proposals recorded, a live unit registered, open
    proposals proposed again with what was decided before."""
    book = Book(budget=4)
    done = Proposal(0, "a", (0,), outcomes={0: ok(0.7, 0.6)})
    book.record(done, duplicate=False)
    book.record(Proposal(1, "a", (0,), duplicate_of=0, outcomes={0: ok(0.7, 0.6)}), duplicate=True)
    book.training(Unit(2, "b", 0))  # Tune restored the trial training it
    measured_b, units = book.propose(2, "b", [0])  # the study records no duplicate: decided again
    assert units == [] and measured_b.duplicate_of is None  # not trained twice, and still its own measurement
    waiting_b, units = book.propose(3, "b", [0], duplicate=True)
    assert units == [] and not waiting_b.done
    lost_c, units = book.propose(4, "c", [0])
    assert units == [Unit(4, "c", 0)]  # its trial never reached Tune's snapshot: it trains now
    reused, units = book.propose(5, "a", [0])
    assert units == [] and reused.duplicate_of == 0 and reused.result()[0] == [0.7, 0.6]
    assert book.finish(Unit(2, "b", 0), ok(0.9, 0.5)) == [2, 3]
    assert book.close(2) is measured_b and book.close(3) is waiting_b and waiting_b.done
    assert (book.measured, book.duplicates, book.proposals) == (3, 3, 6)


def test_a_duplicate_whose_record_a_kill_lost_is_a_duplicate_again_after_the_restart():
    """Killed after a duplicate's parameters were chosen and before the study recorded `duplicate_of`: the study
    holds two open proposals of one configuration and says nothing of the second. It must not become a second
    measurement of the first's unit (counted against the budget, told with that unit's Tune trial)."""
    book = Book(budget=3)
    book.record(Proposal(0, "a", (0,), outcomes={0: ok(0.7, 0.6, trial="t0")}), duplicate=False)
    book.training(Unit(1, "b", 0))  # Tune restored the trial training proposal 1
    owner, units = book.propose(1, "b", [0])
    assert units == [] and owner.duplicate_of is None
    of_training, units = book.propose(2, "b", [0])  # waited for proposal 1's unit when the driver died
    assert units == [] and of_training.duplicate_of == 1 and not of_training.done
    of_finished, units = book.propose(3, "a", [0])  # repeated proposal 0, died before Optuna was told
    assert units == [] and of_finished.duplicate_of == 0 and of_finished.result()[0] == [0.7, 0.6]
    ended_before, units = book.propose(4, "c", [0], outcomes={0: ok(0.5, 0.5, trial="t4")})
    assert units == [] and ended_before.duplicate_of is None and ended_before.done  # its own unit ended
    assert (book.measured, book.duplicates) == (3, 2)
    assert book.finish(Unit(1, "b", 0), ok(0.9, 0.5, trial="t1")) == [1, 2]
    assert (book.complete, book.measured) == (3, 3)  # proposals 0, 1 and 4; 2 and 3 repeat 1 and 0


def test_a_restarted_duplicate_whose_unit_is_gone_fails_as_stale():
    book = Book(budget=2)
    proposal, units = book.propose(7, "x", [0], duplicate=True, duplicate_of=3)
    assert units == [] and proposal.done and proposal.result()[2].startswith("stale")
    assert proposal.duplicate_of == 3  # still a duplicate: counted once, as one, not as a failed measurement
    assert (book.duplicates, book.failed, book.measured) == (1, 0, 0)


def test_the_front_is_kept_one_point_at_a_time():
    front = Front(["max", "min"])
    for point in [(0.8, 0.6), (0.9, 0.7), (0.7, 0.7), (0.85, 0.55), (0.85, 0.55)]:
        front.add(point)
    assert len(front) == 3  # (0.9, 0.7) and the two equal (0.85, 0.55); the others are dominated

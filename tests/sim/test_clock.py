"""The event loop: time order, ties in insertion order, `run(until)`, no time travel."""

from __future__ import annotations

from collections.abc import Callable

from tokenfactory.sim.clock import Environment


def logger(env: Environment, log: list[tuple[float, str]], name: str) -> Callable[[], None]:
    return lambda: log.append((env.now, name))


def test_events_run_in_time_order_whatever_the_insertion_order() -> None:
    env, log = Environment(), list[tuple[float, str]]()
    for when, name in [(3.0, "c"), (1.0, "a"), (2.5, "b"), (0.5, "first")]:
        env.at(when, logger(env, log, name))
    env.run()
    assert log == [(0.5, "first"), (1.0, "a"), (2.5, "b"), (3.0, "c")]
    assert env.now == 3.0


def test_ties_run_in_insertion_order() -> None:
    env, log = Environment(), list[tuple[float, str]]()
    for name in "abcde":
        env.at(1.0, logger(env, log, name))
    env.at(0.0, logger(env, log, "zero"))
    env.run()
    assert [name for _, name in log] == ["zero", "a", "b", "c", "d", "e"]


def test_events_scheduled_by_callbacks_run_and_the_past_is_clamped_to_now() -> None:
    env, log = Environment(), list[tuple[float, str]]()

    def at_two() -> None:
        log.append((env.now, "two"))
        env.at(1.0, logger(env, log, "late"))  # in the past: runs now, not at 1.0
        env.at(2.0, logger(env, log, "same time, after"))
        env.at(4.0, logger(env, log, "four"))

    env.at(2.0, at_two)
    env.at(3.0, logger(env, log, "three"))
    env.run()
    assert log == [
        (2.0, "two"),
        (2.0, "late"),
        (2.0, "same time, after"),
        (3.0, "three"),
        (4.0, "four"),
    ]


def test_run_until_stops_before_later_events_and_resumes() -> None:
    env, log = Environment(), list[tuple[float, str]]()
    for when in (1.0, 2.0, 3.0, 4.0):
        env.at(when, logger(env, log, str(when)))
    env.run(until=2.0)  # an event at exactly `until` still runs
    assert [t for t, _ in log] == [1.0, 2.0]
    assert env.now == 2.0
    env.run(until=2.5)
    assert len(log) == 2
    env.run()
    assert [t for t, _ in log] == [1.0, 2.0, 3.0, 4.0]


def test_step_runs_one_event_and_says_when_none_is_left() -> None:
    env, log = Environment(), list[tuple[float, str]]()
    env.at(1.0, logger(env, log, "a"))
    env.at(2.0, logger(env, log, "b"))
    assert env.step() is True
    assert log == [(1.0, "a")]
    assert env.step() is True
    assert env.step() is False
    assert log == [(1.0, "a"), (2.0, "b")]

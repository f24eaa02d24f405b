"""One incident, one message: the pure graph and words, and the host reducer with a
fake clock (time is an argument; due timers are fired in order by `Host.at`)."""

from __future__ import annotations

from typing import Any

from supervisor.config.loader import LoadedConfig
from supervisor.config.main import MainConfig
from supervisor.config.policy import Policy
from supervisor.core import host, incidents
from supervisor.core.actions import (
    Action,
    CheckPreconditions,
    DependenciesKnown,
    Event,
    PreconditionsChecked,
    RepairDone,
    RunRepair,
    SendAlert,
    Started,
    TimerFired,
    UnitChanged,
)
from supervisor.core.alerting import Alert
from supervisor.core.incidents import Incident
from supervisor.core.state import HostState
from supervisor.core.values import RepairResult, UnitSnapshot

GRAPH = {
    "app.service": frozenset({"db.service", "network.target"}),
    "web.service": frozenset({"app.service"}),
    "db.service": frozenset(),
}


def test_dependencies_are_followed_through_supervised_units_only() -> None:
    supervised = ["app.service", "web.service", "db.service"]
    assert incidents.dependencies_of(GRAPH, "web.service", supervised) == {
        "app.service",
        "db.service",
    }
    assert incidents.dependents_of(GRAPH, "db.service", supervised) == {
        "app.service",
        "web.service",
    }
    assert incidents.dependencies_of(GRAPH, "web.service", ["web.service", "db.service"]) == set()


def test_a_long_list_of_symptoms_is_cut_and_counted() -> None:
    incident = Incident("db.service", 0.0, tuple(f"app{n}.service" for n in range(1, 51)))
    title = incidents.problem_title(incident, "failed (exit-code)")
    assert title.startswith("db.service failed (exit-code); 50 dependents failed with it: ")
    assert title.endswith("app10.service (+40 more)")
    assert "app11.service" not in title
    recovered = incidents.recovery_title(incident, ["restart"], ["app7.service"])
    assert recovered == (
        "db.service recovered after restart; 49 dependents healthy again, "
        "1 still unhealthy: app7.service"
    )


# -- the host reducer ---------------------------------------------------------------------

DEPENDENTS = ("app1.service", "app2.service")


def loaded(window: str = "10s") -> LoadedConfig:
    main = MainConfig.model_validate(
        {
            "alerts": {"channels": {"ops": {"url": "json://localhost/hook"}}},
            "guard": {"max_concurrent": 10, "incidents": {"window": window, "gather": "3s"}},
        }
    )
    policies = {
        unit: Policy.model_validate(
            {"unit": unit, "alerts": ["ops"], "recovery": {"ladder": ["restart"], "settle": "2s"}}
        )
        for unit in ("db.service", *DEPENDENTS)
    }
    return LoadedConfig(main, policies, {})


def snap(unit: str, active: str) -> UnitSnapshot:
    sub, result = {
        "active": ("running", "success"),
        "failed": ("failed", "exit-code"),
        "inactive": ("dead", "success"),
    }[active]
    return UnitSnapshot(unit, "loaded", active, sub, result, 0, 0, True, "no")


class Host:
    """The reducer driven like the shell drives it, on a fake clock: due timers fire
    before each event, and every action is kept."""

    def __init__(self, window: str = "10s") -> None:
        self.state: HostState
        self.state, _ = host.initial(loaded(window), {}, {}, hostname="h", dry_run=False, now=0)
        self.now = 0.0
        self.actions: list[tuple[float, Action]] = []
        for unit in ("db.service", *DEPENDENTS):
            self.feed(UnitChanged(snap(unit, "active")))
        self.feed(Started())
        graph = {unit: frozenset({"db.service"}) for unit in DEPENDENTS}
        self.feed(DependenciesKnown({**graph, "db.service": frozenset()}))

    def at(self, now: float, event: Event | None = None) -> list[Action]:
        while True:
            due = sorted((at, key) for key, at in self.state.timers.items() if at <= now)
            if not due:
                break
            self.now = due[0][0]
            self.feed(TimerFired(due[0][1]))
        self.now = now
        return self.feed(event) if event is not None else []

    def feed(self, event: Event) -> list[Action]:
        self.state, out = host.step(self.state, event, self.now)
        self.actions += [(self.now, action) for action in out]
        # The shell answers a precondition check at once with "all hold".
        for action in out:
            if isinstance(action, CheckPreconditions):
                out += self.feed(PreconditionsChecked(action.unit, ""))
        return out

    def repairs(self) -> list[tuple[float, str]]:
        return [(t, a.unit) for t, a in self.actions if isinstance(a, RunRepair)]

    def alerts(self) -> list[Alert]:
        return [a.alert for _, a in self.actions if isinstance(a, SendAlert) and a.alert.unit]

    def restarted(self, unit: str) -> None:
        """The restart job of `unit` is done and the unit is active."""
        self.feed(UnitChanged(snap(unit, "active")))
        self.feed(RepairDone(unit, "restart", 1, 3, RepairResult.DONE, "job done", 100.0))  # type: ignore[arg-type]


def events(alerts: list[Alert]) -> list[tuple[str | None, str]]:
    return [(alert.unit, alert.event) for alert in alerts]


def test_dependents_that_fail_after_the_root_wait_for_it_and_share_its_one_message() -> None:
    h = Host()
    h.at(100.0, UnitChanged(snap("db.service", "failed")))
    assert h.repairs() == [(100.0, "db.service")]
    h.at(100.5, UnitChanged(snap("app1.service", "failed")))
    h.at(100.7, UnitChanged(snap("app2.service", "failed")))
    assert h.state.units["app1.service"].held_by == "waiting for root"
    assert h.repairs() == [(100.0, "db.service")], "no dependent repaired before the root"
    assert h.alerts() == [], "the root's message waits for its symptoms"
    h.at(103.0)
    (problem,) = h.alerts()
    assert problem.unit == "db.service" and problem.problem
    assert problem.title == (
        "db.service failed (exit-code); 2 dependents failed with it: app1.service, app2.service"
    )
    assert problem.body.startswith(
        "db.service failed (exit-code). Now restarting db.service (attempt 1 of 3). "
        "Its dependents wait for it."
    )
    h.at(104.0)
    h.restarted("db.service")  # db is back at 104; app1 comes back on its own
    h.at(105.0, UnitChanged(snap("app1.service", "active")))
    assert h.repairs() == [(100.0, "db.service")], "settle (2s) after the root first"
    h.at(106.5)
    assert h.repairs() == [(100.0, "db.service"), (106.0, "app2.service")]
    h.restarted("app2.service")
    h.at(120.0)
    assert events(h.alerts()) == [("db.service", "unhealthy"), ("db.service", "recovered")]
    recovered = h.alerts()[1]
    assert recovered.title == "db.service recovered after restart; 2 dependents healthy again"
    assert "Repaired after it: app2.service. 1 dependent came back without a repair." in (
        recovered.body
    )
    assert recovered.resolves == ("unhealthy", "exhausted", "protected")
    assert h.state.incidents == {}


def test_a_dependent_that_failed_first_is_a_symptom_if_its_repair_has_not_started() -> None:
    h = Host()
    # app1 fails first; its repair is asked for but the preconditions are not read yet.
    h.state, _ = host.step(h.state, UnitChanged(snap("app1.service", "failed")), 100.0)
    h.now = 100.0
    assert h.state.units["app1.service"].asked is not None
    h.at(101.0, UnitChanged(snap("db.service", "failed")))
    h.feed(PreconditionsChecked("app1.service", ""))
    assert h.state.units["app1.service"].held_by == "waiting for root"
    assert h.state.incidents["db.service"].symptoms == ("app1.service",)
    assert [unit for _, unit in h.repairs()] == ["db.service"]
    h.at(104.5)
    assert events(h.alerts()) == [("db.service", "unhealthy")]
    assert "1 dependent failed with it: app1.service" in h.alerts()[0].title


def test_a_dependent_whose_repair_ran_before_the_root_failed_stays_on_its_own() -> None:
    h = Host()
    h.at(100.0, UnitChanged(snap("app1.service", "failed")))
    assert h.repairs() == [], "a moment's grace: what it depends on may be failing too"
    h.at(100.5)
    assert h.repairs() == [(100.3, "app1.service")]
    h.at(101.0, UnitChanged(snap("db.service", "failed")))
    assert h.state.incidents["db.service"].symptoms == ()
    h.at(104.0)
    assert ("app1.service", "unhealthy") in events(h.alerts())


def test_a_failure_after_the_window_is_an_incident_of_its_own() -> None:
    h = Host(window="5s")
    h.at(100.0, UnitChanged(snap("db.service", "failed")))
    h.restarted("db.service")
    h.at(106.0, UnitChanged(snap("app1.service", "failed")))
    h.at(106.5)
    assert h.state.incidents == {}
    assert [unit for _, unit in h.repairs()] == ["db.service", "app1.service"]
    h.at(110.0)
    assert ("app1.service", "unhealthy") in events(h.alerts())


def test_window_zero_turns_grouping_off() -> None:
    h = Host(window="0s")
    h.at(100.0, UnitChanged(snap("db.service", "failed")))
    h.at(100.5, UnitChanged(snap("app1.service", "failed")))
    assert [unit for _, unit in h.repairs()] == ["db.service", "app1.service"]
    assert events(h.alerts())[:1] == [("db.service", "unhealthy")]
    assert h.state.incidents == {}


def test_a_dependency_seen_failing_a_moment_after_its_dependent_is_the_root() -> None:
    h = Host()
    h.at(100.0, UnitChanged(snap("app1.service", "failed")))
    h.at(100.1, UnitChanged(snap("db.service", "failed")))
    h.at(100.5)
    assert h.state.incidents["db.service"].symptoms == ("app1.service",)
    assert [unit for _, unit in h.repairs()] == ["db.service"]


def test_a_unit_alone_alerts_at_once_even_with_a_graph() -> None:
    h = Host()
    h.feed(DependenciesKnown({}))  # nothing depends on anything any more
    h.at(100.0, UnitChanged(snap("db.service", "failed")))
    assert events(h.alerts())[:1] == [("db.service", "unhealthy")]


def test_the_graph_is_data_from_the_shell() -> None:
    h = Host()
    assert h.state.dependencies["app1.service"] == {"db.service"}
    changed: dict[str, Any] = {"app1.service": frozenset(), "db.service": frozenset()}
    h.feed(DependenciesKnown(changed))
    assert h.state.dependencies == changed


def test_a_root_no_longer_supervised_frees_its_waiting_symptoms() -> None:
    from supervisor.core.actions import PoliciesLoaded

    h = Host()
    h.at(100.0, UnitChanged(snap("db.service", "failed")))
    h.at(100.5, UnitChanged(snap("app1.service", "failed")))
    assert h.state.units["app1.service"].held_by == "waiting for root"
    full = loaded()
    without_db = LoadedConfig(
        full.main, {u: p for u, p in full.policies.items() if u != "db.service"}, {}
    )
    h.at(101.0, PoliciesLoaded(without_db))
    assert h.state.incidents == {}
    assert (101.0, "app1.service") in h.repairs()


def test_a_dependent_systemd_stopped_with_its_root_is_started_once_the_root_is_back() -> None:
    h = Host()
    h.at(100.0, UnitChanged(snap("db.service", "failed")))
    h.at(100.2, UnitChanged(snap("app1.service", "inactive")))  # BindsTo=: stopped with it
    assert h.state.incidents["db.service"].stopped == ("app1.service",)
    h.at(101.0)
    h.restarted("db.service")
    assert h.repairs() == [(100.0, "db.service")]
    h.at(103.5)
    assert h.repairs() == [(100.0, "db.service"), (103.0, "app1.service")]
    h.restarted("app1.service")
    h.at(120.0)
    problem, recovered = h.alerts()
    assert "1 dependent failed or stopped with it: app1.service" in problem.title
    assert recovered.title == "db.service recovered after restart; 1 dependent healthy again"


def test_a_dependent_stopped_by_a_person_long_after_the_root_failed_is_left_stopped() -> None:
    h = Host(window="5s")
    h.at(100.0, UnitChanged(snap("db.service", "failed")))
    h.restarted("db.service")
    h.at(110.0, UnitChanged(snap("app1.service", "inactive")))
    h.at(130.0)
    assert "app1.service" not in [unit for _, unit in h.repairs()]


def test_a_dependent_stopped_a_moment_before_its_root_is_seen_failing_is_a_symptom() -> None:
    h = Host()
    h.at(100.0, UnitChanged(snap("app1.service", "inactive")))  # systemd's BindsTo= stop
    h.at(100.2, UnitChanged(snap("db.service", "failed")))
    assert h.state.incidents["db.service"].stopped == ("app1.service",)
    h.at(101.0)
    h.restarted("db.service")
    h.at(103.5)
    assert [unit for _, unit in h.repairs()] == ["db.service", "app1.service"]

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import ContractError
from schemas.topics import COMMAND_NAMES, JOB_KINDS, TopicKind, Topics

T = Topics()
car_ids = st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True)


def test_the_tree_matches_the_architecture() -> None:
    assert T.hub_status() == "paddock/v1/hub/status"
    assert T.car_status("car-1") == "paddock/v1/cars/car-1/status"
    assert T.telemetry("car-1") == "paddock/v1/cars/car-1/telemetry"
    assert T.frames("car-1") == "paddock/v1/cars/car-1/frames"
    assert T.events("car-1") == "paddock/v1/cars/car-1/events"
    assert T.command("car-1", "drive") == "paddock/v1/cars/car-1/cmd/drive"
    assert T.command_response("car-1", "mode") == "paddock/v1/cars/car-1/cmd/mode/response"
    assert T.fleet_estop() == "paddock/v1/fleet/estop"
    assert T.car_model("car-1") == "paddock/v1/cars/car-1/model"
    assert T.group_model("red") == "paddock/v1/groups/red/model"
    assert T.model_state("car-1") == "paddock/v1/cars/car-1/model/state"
    assert T.job_request("train") == "paddock/v1/jobs/train"
    assert T.job_progress("train", "j1") == "paddock/v1/jobs/train/j1/progress"
    assert T.job_result("evaluate", "j1") == "paddock/v1/jobs/evaluate/j1/result"
    assert T.all_cars("frames") == "paddock/v1/cars/+/frames"


@given(car=car_ids, name=st.sampled_from(COMMAND_NAMES), kind=st.sampled_from(JOB_KINDS))
def test_parse_inverts_build(car: str, name: str, kind: str) -> None:
    assert T.parse(T.frames(car)).car == car
    assert T.parse(T.frames(car)).kind is TopicKind.FRAMES
    assert T.parse(T.model_state(car)).kind is TopicKind.MODEL_STATE
    parsed = T.parse(T.command_response(car, name))
    assert (parsed.kind, parsed.car, parsed.command) == (TopicKind.COMMAND_RESPONSE, car, name)
    parsed = T.parse(T.job_result(kind, "job-7"))
    assert (parsed.kind, parsed.job_kind, parsed.job) == (TopicKind.JOB_RESULT, kind, "job-7")
    assert T.parse(T.group_model(car)).group == car


@pytest.mark.parametrize(
    "car", ["", "Car1", "car_1", "car/1", "+", "#", "a" * 33, "car 1", "..", "ca\u00e9r"]
)
def test_bad_car_ids_are_a_clear_error(car: str) -> None:
    with pytest.raises(ContractError, match="invalid car id"):
        T.frames(car)


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/hub/status",
        "paddock/v2/hub/status",
        "paddock/v1/cars/UPPER/frames",
        "paddock/v1/cars/car-1/unknown",
        "paddock/v1/cars/car-1/cmd/selfdestruct",
        "paddock/v1/jobs/mine",
        "paddock/v1/cars/car-1/frames/extra",
        "paddock/v1",
    ],
)
def test_parse_rejects_topics_outside_the_tree(topic: str) -> None:
    with pytest.raises(ContractError):
        T.parse(topic)


def test_prefix_is_configurable() -> None:
    t = Topics("lab/fleet-a")
    assert t.frames("c1") == "lab/fleet-a/v1/cars/c1/frames"
    assert t.parse("lab/fleet-a/v1/cars/c1/frames").car == "c1"
    with pytest.raises(ContractError):
        t.parse("paddock/v1/cars/c1/frames")
    for bad in ["", "a/", "a//b", "a/+", "a#"]:
        with pytest.raises(ContractError):
            Topics(bad)

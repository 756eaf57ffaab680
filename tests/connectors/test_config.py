"""Config models: the samples validate, and bad input is rejected with the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from connectors import MachineConfig
from connectors.modbus.config import ModbusMachine
from connectors.opcua.config import OpcUaMachine

ROOT = Path(__file__).resolve().parents[2] / "connectors"


def modbus(*tags: dict[str, Any], **machine: Any) -> ModbusMachine:
    return ModbusMachine.model_validate(
        {"type": "modbus", "id": "m", "host": "127.0.0.1", "tags": list(tags), **machine}
    )


def opcua(*tags: dict[str, Any], **machine: Any) -> OpcUaMachine:
    return OpcUaMachine.model_validate(
        {"type": "opcua", "id": "o", "endpoint": "opc.tcp://127.0.0.1:4840", "tags": list(tags), **machine}
    )


def error_text(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


@pytest.mark.parametrize("folder", ["modbus", "opcua"])
def test_sample_yaml_validates(folder: str) -> None:
    section = yaml.safe_load((ROOT / folder / "sample.yaml").read_text())
    machine = TypeAdapter(MachineConfig).validate_python(section)
    assert machine.type == folder
    assert machine.build_connector().machine_id == machine.id


@pytest.mark.parametrize("folder", ["modbus", "opcua"])
def test_sample_yaml_loads_as_a_machine_of_an_agent_config(folder: str) -> None:
    from edge_agent.runtime.loader import parse_config

    sample = (ROOT / folder / "sample.yaml").read_text()
    indented = "\n".join(f"    {line}" if line.strip() else line for line in sample.splitlines())
    config = parse_config(f"machines:\n  -\n{indented}\n", file="sample.yaml")
    assert [m.type for m in config.machines] == [folder]


@pytest.mark.parametrize("folder", ["modbus", "opcua"])
@pytest.mark.parametrize("dump", [{}, {"exclude_none": True}, {"exclude_unset": True}, {"exclude_defaults": True}])
def test_a_dumped_machine_validates_again(folder: str, dump: dict[str, bool]) -> None:
    section = yaml.safe_load((ROOT / folder / "sample.yaml").read_text())
    adapter: TypeAdapter[Any] = TypeAdapter(MachineConfig)
    machine = adapter.validate_python(section)
    again = adapter.validate_python(machine.model_dump(mode="json", **dump))
    assert again == machine


def test_a_dumped_subscribe_machine_validates_again() -> None:
    machine = opcua({"name": "a", "node": "i=2258", "deadband": 1}, mode="subscribe", queue_size=3, deadband=0.5)
    assert OpcUaMachine.model_validate(machine.model_dump(mode="json")) == machine


@pytest.mark.parametrize("folder", ["modbus", "opcua"])
def test_sample_yaml_documents_every_key(folder: str) -> None:
    text = (ROOT / folder / "sample.yaml").read_text()
    model = ModbusMachine if folder == "modbus" else OpcUaMachine
    for key in model.model_fields:
        assert f"{key}:" in text, f"sample.yaml does not mention {key!r}"
    tag_model = model.model_fields["tags"].annotation.__args__[0]  # type: ignore[union-attr]
    for key in tag_model.model_fields:
        assert f"{key}:" in text, f"sample.yaml does not mention tag key {key!r}"


@pytest.mark.parametrize("folder", ["modbus", "opcua"])
def test_readme_has_the_fixed_sections(folder: str) -> None:
    text = (ROOT / folder / "README.md").read_text()
    headings = [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]
    assert headings[:6] == ["Summary", "Configuration", "Readings produced", "Errors", "Troubleshooting", "Simulator"]


@pytest.mark.parametrize("folder", ["modbus", "opcua"])
def test_readme_embeds_the_sample_verbatim(folder: str) -> None:
    readme = (ROOT / folder / "README.md").read_text()
    sample = (ROOT / folder / "sample.yaml").read_text()
    assert f"```yaml\n{sample}```\n" in readme, "README's Configuration block differs from sample.yaml"


# --- Modbus -----------------------------------------------------------------------------------


def test_modbus_defaults() -> None:
    machine = modbus({"name": "a", "address": 0})
    assert (machine.port, machine.unit_id, machine.max_gap) == (502, 1, 10)
    tag = machine.tags[0]
    assert (tag.table, tag.type, tag.byte_order, tag.scale, tag.offset) == ("holding", "uint16", "ABCD", 1.0, 0.0)


@pytest.mark.parametrize("address", [-1, 65536, 100000])
def test_modbus_address_out_of_range(address: int) -> None:
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "a", "address": address})
    text = error_text(exc)
    assert "tags.0.address" in text
    assert f"address is outside 0-65535, the addresses Modbus can express (got {address})" in text
    assert "Fix: use the register's offset within its table" in text


def test_modbus_register_span_past_the_end() -> None:
    modbus({"name": "ok", "address": 65534, "type": "float32"})
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "late", "address": 65535, "type": "float32"})
    text = error_text(exc)
    assert "'late'" in text
    assert "65535-65536" in text
    assert "Fix: correct the address (at most 65534 for a float32)" in text


@pytest.mark.parametrize(
    ("key", "value", "suggestion"),
    [
        ("type", "float", "did you mean 'float32'?"),
        ("type", "DINT", "did you mean 'int32'?"),
        ("type", "uint23", "did you mean 'uint32'?"),
        ("type", "foo", "Fix: use one of 'bool', 'int16'"),
        ("table", "holdings", "did you mean 'holding'?"),
        ("table", "coils", "did you mean 'coil'?"),
        ("byte_order", "ABDC", "did you mean 'BADC'?"),
        ("byte_order", "little", "Fix: use one of 'ABCD', 'DCBA', 'BADC', 'CDAB'"),
    ],
)
def test_modbus_unknown_choice_names_the_key_and_the_fix(key: str, value: str, suggestion: str) -> None:
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "a", "address": 0, key: value})
    text = error_text(exc)
    assert f"tags.0.{key}" in text
    assert f"unknown {key} (got {value!r}). Fix:" in text
    assert suggestion in text


def test_modbus_unknown_key_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "a", "address": 0, "adress": 1})
    assert "tags.0.adress" in error_text(exc)


def test_modbus_overlapping_tags_with_different_types() -> None:
    with pytest.raises(ValidationError) as exc:
        modbus(
            {"name": "speed", "address": 10, "type": "float32"},
            {"name": "other", "address": 5},
            {"name": "status", "address": 11, "type": "int16"},
        )
    text = error_text(exc)
    assert "tags[0] 'speed' (holding 10-11, float32 ABCD)" in text
    assert "tags[2] 'status' (holding 11, int16 ABCD)" in text
    assert "Fix:" in text


def test_modbus_overlapping_tags_with_different_byte_orders() -> None:
    with pytest.raises(ValidationError) as exc:
        modbus(
            {"name": "a", "address": 0, "type": "int32"},
            {"name": "b", "address": 0, "type": "int32", "byte_order": "CDAB"},
        )
    assert "'a'" in error_text(exc)
    assert "'b'" in error_text(exc)


def test_modbus_overlaps_that_are_fine() -> None:
    # The same registers read the same way (e.g. raw and scaled), or in different tables.
    modbus(
        {"name": "raw", "address": 0, "type": "int32"},
        {"name": "scaled", "address": 0, "type": "int32", "scale": 0.5},
        {"name": "input", "address": 1, "type": "int32", "table": "input"},
        {"name": "next", "address": 2, "type": "int32"},
    )


def test_modbus_duplicate_tag_names() -> None:
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "a", "address": 0}, {"name": "a", "address": 1})
    assert "tags[1] and tags[0] are both named 'a'" in error_text(exc)


def test_modbus_needs_tags() -> None:
    with pytest.raises(ValidationError) as exc:
        modbus()
    assert "tags" in error_text(exc)


# --- OPC UA -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node",
    [
        "nsu=urn:x;s=Machine.Speed",
        "ns=2;s=Machine.Speed",
        "ns=3;i=1001",
        "i=2258",
        "ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a",
        "ns=1;b=YWJj",
    ],
)
def test_opcua_node_ids_that_parse(node: str) -> None:
    assert opcua({"name": "a", "node": node}).tags[0].node == node


@pytest.mark.parametrize(
    ("node", "hint"),
    [
        ("Machine.Speed", "is not an OPC UA node id"),
        ("ns=2;x=1", "is not an OPC UA node id"),
        ("s=Machine.Speed", "names no namespace"),
        ("ns=abc;s=1", "is not a valid OPC UA node id"),
        ("ns=1;g=not-a-guid", "is not a valid OPC UA node id"),
    ],
)
def test_opcua_node_ids_that_do_not_parse(node: str, hint: str) -> None:
    with pytest.raises(ValidationError) as exc:
        opcua({"name": "a", "node": node})
    text = error_text(exc)
    assert "tags.0.node" in text
    assert hint in text
    assert "Fix:" in text


def test_opcua_endpoint_must_be_opc_tcp() -> None:
    with pytest.raises(ValidationError) as exc:
        opcua({"name": "a", "node": "i=2258"}, endpoint="http://host:4840")
    assert "endpoint" in error_text(exc)


def test_opcua_credentials_in_the_endpoint_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        opcua({"name": "a", "node": "i=2258"}, endpoint="opc.tcp://admin:hunter2@plc:4840/")
    assert "Fix: remove it from the endpoint and use the username and password keys" in error_text(exc)
    assert "endpoint" in error_text(exc)
    opcua({"name": "a", "node": "i=2258"}, endpoint="opc.tcp://plc:4840/path@with-at")


def test_opcua_security_takes_the_policies_the_agent_speaks_and_no_others() -> None:
    machine = opcua({"name": "a", "node": "i=2258"}, security={"policy": "Basic256Sha256", "mode": "SignAndEncrypt"})
    assert (machine.security.policy, machine.security.mode) == ("Basic256Sha256", "SignAndEncrypt")
    with pytest.raises(ValidationError) as exc:
        opcua({"name": "a", "node": "i=2258"}, security={"policy": "Basic128Rsa15", "mode": "SignAndEncrypt"})
    assert "security.policy" in error_text(exc)


def test_opcua_duplicate_tag_names() -> None:
    with pytest.raises(ValidationError) as exc:
        opcua({"name": "a", "node": "i=2258"}, {"name": "a", "node": "i=2259"})
    assert "both named 'a'" in error_text(exc)


def test_opcua_connect_timeout_defaults_to_timeout_but_at_least_5_s() -> None:
    machine = opcua({"name": "a", "node": "i=2258"}, interval="2s")
    assert machine.effective_connect_timeout == 5.0  # a handshake is several round trips, not one poll
    assert opcua({"name": "a", "node": "i=2258"}, interval="10s").effective_connect_timeout == pytest.approx(8.0)
    assert opcua({"name": "a", "node": "i=2258"}, connect_timeout="5s").effective_connect_timeout == 5.0
    with pytest.raises(ValidationError) as exc:
        opcua({"name": "a", "node": "i=2258"}, connect_timeout=0)
    assert "connect_timeout" in error_text(exc)


def test_password_is_not_shown() -> None:
    machine = opcua({"name": "a", "node": "i=2258"}, username="u", password="s3cret")
    assert "s3cret" not in repr(machine)
    assert "s3cret" not in str(machine.model_dump())


# --- Modbus: bits, strings, 64-bit, unit ids, quirks -------------------------------------------


def test_modbus_bit_tables_default_to_bool() -> None:
    machine = modbus(
        {"name": "c", "table": "coil", "address": 0}, {"name": "d", "table": "discrete_input", "address": 0}
    )
    assert [t.type for t in machine.tags] == ["bool", "bool"]
    assert [t.register_count for t in machine.tags] == [1, 1]


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ({"table": "coil", "type": "uint16"}, "the coil table holds single bits, so type must be bool"),
        ({"table": "coil", "bit": 2}, "bit applies to a bool in a register"),
        ({"table": "discrete_input", "byte_order": "CDAB"}, "byte_order does not apply to a discrete_input"),
        ({"type": "bool"}, "needs bit: which bit of the register"),
        ({"type": "uint16", "bit": 3}, "bit only applies to type bool"),
        ({"type": "bool", "bit": 16}, "less than or equal to 15"),
        ({"type": "string"}, "a string needs length"),
        ({"type": "string", "length": 0}, "greater than or equal to 1"),
        ({"type": "int32", "length": 2}, "length only applies to type string"),
        ({"type": "bool", "bit": 1, "scale": 2}, "scale and offset do not apply to a bool"),
        ({"type": "string", "length": 2, "offset": 1}, "scale and offset do not apply to a string"),
        ({"table": "coils"}, "use one of 'holding', 'input', 'coil', 'discrete_input'"),
        ({"type": "int64", "address": 65533}, "at most 65532 for an int64"),
        ({"type": "string", "length": 10, "address": 65530}, "at most 65526 for a string of length 10"),
        ({"unit_id": 256}, "less than or equal to 255"),
    ],
)
def test_modbus_keys_that_do_not_fit_the_type(tag: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "x", "address": 0, **tag})
    assert message in error_text(exc)
    assert "tags.0" in error_text(exc)


def test_modbus_types_that_are_fine() -> None:
    machine = modbus(
        {"name": "b", "address": 0, "type": "bool", "bit": 15},
        {"name": "b2", "address": 0, "type": "bool", "bit": 0},
        {"name": "w", "address": 0},  # the whole word and its bits
        {"name": "s", "address": 1, "type": "string", "length": 8},
        {"name": "q", "address": 9, "type": "float64", "byte_order": "DCBA"},
    )
    assert [t.register_count for t in machine.tags] == [1, 1, 1, 8, 4]


def test_modbus_one_based_addresses() -> None:
    assert modbus({"name": "a", "address": 1}, address_base=1).address_base == 1
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "a", "address": 0}, address_base=1)
    assert "has address 0, but address_base is 1" in error_text(exc)
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "a", "address": 1}, address_base=2)
    assert "address_base" in error_text(exc)


def test_modbus_overlap_is_checked_per_unit_id() -> None:
    modbus({"name": "a", "address": 0, "type": "int32"}, {"name": "b", "address": 1, "unit_id": 2})
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "a", "address": 0, "type": "int32", "unit_id": 2}, {"name": "b", "address": 1, "unit_id": 2})
    assert "overlap" in error_text(exc)


def test_modbus_quirk_limits() -> None:
    machine = modbus(
        {"name": "a", "address": 0},
        max_registers_per_request=10,
        max_bits_per_request=8,
        one_request_per_tag=True,
        pause_after_connect="1s",
        pause_between_requests="50ms",
        close_after_cycle=True,
        request_timeout="1s",
        interval="5s",
    )
    assert (machine.pause_after_connect, machine.pause_between_requests) == (1.0, 0.05)
    for key, value, fix in [
        ("max_registers_per_request", 126, "less than or equal to 125"),
        ("max_registers_per_request", 0, "greater than or equal to 1"),
        ("max_bits_per_request", 2001, "less than or equal to 2000"),
        ("pause_between_requests", "soon", "is not a duration"),
        ("pause_after_connect", -1, "pause_after_connect must not be negative"),
        ("request_timeout", "1s", "request_timeout (1 s) must be greater than 0 and shorter than the poll's timeout"),
    ]:
        with pytest.raises(ValidationError) as exc:
            modbus({"name": "a", "address": 0}, **{key: value})
        assert fix in error_text(exc), key
    with pytest.raises(ValidationError) as exc:
        modbus({"name": "s", "address": 0, "type": "string", "length": 20}, max_registers_per_request=16)
    assert "spans 20 registers, more than max_registers_per_request (16)" in error_text(exc)


# --- OPC UA: chunking, staleness, subscriptions --------------------------------------------------


def test_opcua_subscription_keys() -> None:
    machine = opcua(
        {"name": "a", "node": "i=2258", "sampling_interval": "0s", "deadband": 0.5},
        {"name": "b", "node": "i=2259", "max_age": "1m"},
        mode="subscribe",
        interval="2s",
        sampling_interval="500ms",
        queue_size=5,
        deadband=0.1,
        max_queued_samples=100,
    )
    a, b = machine.tags
    assert (machine.sampling_interval_of(a), machine.sampling_interval_of(b)) == (0.0, 0.5)
    assert (machine.deadband_of(a), machine.deadband_of(b)) == (0.5, 0.1)
    assert (machine.max_age_of(a), machine.max_age_of(b)) == (None, 60.0)
    defaults = opcua({"name": "a", "node": "i=2258"}, mode="subscribe", interval="2s", max_age="5s")
    assert defaults.sampling_interval_of(defaults.tags[0]) == 2.0
    assert defaults.max_age_of(defaults.tags[0]) == 5.0
    assert machine.effective_max_queued_samples == 100
    assert defaults.effective_max_queued_samples == 10000


def test_opcua_change_queue_grows_with_the_tag_count() -> None:
    # 5,000 subscribed items: two sampling intervals in one publish must not overflow the queue.
    many = opcua(*({"name": f"t{i}", "node": f"ns=2;i={i}"} for i in range(5000)), mode="subscribe", interval="1s")
    assert many.effective_max_queued_samples == 50000


@pytest.mark.parametrize(
    ("keys", "tag_keys", "message"),
    [
        ({"queue_size": 5}, {}, "queue_size only applies with mode: subscribe. Fix: remove queue_size or set mode"),
        ({"deadband": 1}, {}, "deadband only applies with mode: subscribe"),
        ({}, {"deadband": 1}, "tags[0] 'a': deadband only applies with mode: subscribe"),
        ({}, {"sampling_interval": "1s"}, "tags[0] 'a': sampling_interval only applies with mode: subscribe"),
        ({"max_age": 0}, {}, "max_age must be greater than 0"),
        ({}, {"max_age": "0s"}, "tags[0].max_age must be greater than 0"),
        ({"mode": "subscribe", "sampling_interval": -1}, {}, "sampling_interval must not be negative"),
        ({"mode": "subscribe", "deadband": -1}, {}, "greater than or equal to 0"),
        ({"mode": "subscribe", "deadband_type": "percent", "deadband": 150}, {}, "within 0-100"),
        ({"mode": "subscribe", "queue_size": 0}, {}, "greater than or equal to 1"),
        ({"mode": "stream"}, {}, "'poll' or 'subscribe'"),
        ({"max_nodes_per_read": 0}, {}, "greater than or equal to 1"),
    ],
)
def test_opcua_bad_mode_keys(keys: dict[str, Any], tag_keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        opcua({"name": "a", "node": "i=2258", **tag_keys}, **keys)
    assert message in error_text(exc)


def test_modbus_pauses_must_fit_in_a_poll() -> None:
    tags = [{"name": f"t{i}", "address": i} for i in range(5)]
    modbus(*tags, one_request_per_tag=True, pause_between_requests="100ms")  # 0.4 s of 0.72 s
    with pytest.raises(ValidationError) as exc:
        modbus(*tags, one_request_per_tag=True, pause_between_requests="200ms")
    assert "one poll sends 5 request(s) and pauses 0.8 s in total" in error_text(exc)
    assert "Fix: raise interval" in error_text(exc)
    modbus(*tags, one_request_per_tag=True, pause_between_requests="200ms", interval="2s")
    with pytest.raises(ValidationError) as exc:
        modbus(tags[0], close_after_cycle=True, pause_after_connect="1s")
    assert "pause_between_requests and pause_after_connect" in error_text(exc)

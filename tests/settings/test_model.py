"""The settings rules without I/O: validation of PUT and PATCH bodies, the merge, the document."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartpip.http.etags import etag_for, json_body
from smartpip.settings.model import (
    MAX_FLAGS_PER_HOST,
    MAX_HOSTS,
    MAX_SKIP_SECONDS,
    MIN_SKIP_SECONDS,
    InvalidSettings,
    PatchBody,
    PutBody,
    SettingsPatch,
    SettingsPut,
    canonical_document,
    merge,
    replaced,
    validate_patch,
    validate_put,
)
from store.settings import DEFAULT_SETTINGS, SettingsRow

FLAGS = {"www.youtube.com": {"skipAds": True, "mute": False}, "vimeo.com": {"x": True}}
SAVED = SettingsRow(auto_pip=True, skip_seconds=20, site_flags=FLAGS)


def long_host(index: int) -> str:
    """A 198-character host name: 40 of them with one flag each are past 8 KiB."""
    return ".".join([c * 63 for c in "abc"]) + f".h{index}"


def put(**change: Any) -> PutBody:
    fields: dict[str, Any] = {"auto_pip": False, "skip_seconds": 10, "site_flags": {}}
    return PutBody(**{**fields, **change})


def fields_of(error: pytest.ExceptionInfo[InvalidSettings]) -> list[str]:
    return [e.field for e in error.value.errors]


def test_a_valid_put_is_the_new_document() -> None:
    body = PutBody(auto_pip=True, skip_seconds=20, site_flags=FLAGS)
    assert validate_put(body) == SettingsPut(SAVED, sent_retention=False, sent_paused=False)
    full = PutBody(
        auto_pip=True,
        skip_seconds=20,
        site_flags=FLAGS,
        history_retention_days=7,
        history_paused=True,
    )
    chosen = attrs.evolve(SAVED, history_retention_days=7, history_paused=True)
    assert validate_put(full) == SettingsPut(chosen)


def test_a_put_keeps_the_history_fields_it_does_not_send() -> None:
    current = attrs.evolve(SAVED, history_retention_days=30, history_paused=True)
    old_client = validate_put(put(skip_seconds=45))
    assert replaced(current, old_client) == SettingsRow(
        auto_pip=False,
        skip_seconds=45,
        site_flags={},
        history_retention_days=30,
        history_paused=True,
    )
    cleared = validate_put(put(history_retention_days=None, history_paused=False))
    assert replaced(current, cleared) == SettingsRow(auto_pip=False, skip_seconds=10, site_flags={})
    only_paused = validate_put(put(history_paused=False))
    assert replaced(current, only_paused).history_retention_days == 30
    assert replaced(current, only_paused).history_paused is False


@pytest.mark.parametrize("days", [None, 1, 7, 30, 90])
def test_every_offered_retention_is_valid(days: int | None) -> None:
    assert validate_put(put(history_retention_days=days)).settings.history_retention_days == days
    patch = validate_patch(PatchBody(history_retention_days=days))
    assert patch == SettingsPatch(sets_retention=True, history_retention_days=days)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"auto_pip": 1}, "autoPip", id="autoPip-one"),
        pytest.param({"auto_pip": None}, "autoPip", id="autoPip-null"),
        pytest.param({"skip_seconds": MIN_SKIP_SECONDS - 1}, "skipSeconds", id="skip-low"),
        pytest.param({"skip_seconds": MAX_SKIP_SECONDS + 1}, "skipSeconds", id="skip-high"),
        pytest.param({"skip_seconds": 10.0}, "skipSeconds", id="skip-float"),
        pytest.param({"skip_seconds": True}, "skipSeconds", id="skip-bool"),
        pytest.param({"site_flags": []}, "siteFlags", id="flags-array"),
        pytest.param({"history_retention_days": 0}, "historyRetentionDays", id="retention-0"),
        pytest.param({"history_retention_days": 2}, "historyRetentionDays", id="retention-2"),
        pytest.param({"history_retention_days": 365}, "historyRetentionDays", id="retention-365"),
        pytest.param({"history_retention_days": -7}, "historyRetentionDays", id="retention-neg"),
        pytest.param({"history_retention_days": 7.0}, "historyRetentionDays", id="retention-7.0"),
        pytest.param({"history_retention_days": "7"}, "historyRetentionDays", id="retention-str"),
        pytest.param({"history_retention_days": True}, "historyRetentionDays", id="retention-bool"),
        pytest.param({"history_paused": None}, "historyPaused", id="paused-null"),
        pytest.param({"history_paused": 1}, "historyPaused", id="paused-one"),
        pytest.param({"history_paused": "true"}, "historyPaused", id="paused-str"),
        pytest.param({"site_flags": {"Example.com": {}}}, "siteFlags", id="host-upper"),
        pytest.param({"site_flags": {"*.a.com": {}}}, "siteFlags", id="host-wildcard"),
        pytest.param({"site_flags": {"a.com.": {}}}, "siteFlags", id="host-trailing-dot"),
        pytest.param({"site_flags": {"a.com:80": {}}}, "siteFlags", id="host-port"),
        pytest.param({"site_flags": {"a" * 64 + ".com": {}}}, "siteFlags", id="label-64"),
        pytest.param({"site_flags": {"a.com": None}}, "siteFlags", id="put-host-null"),
        pytest.param({"site_flags": {"a.com": {"on": 1}}}, "siteFlags", id="flag-number"),
        pytest.param({"site_flags": {"a.com": {"1on": True}}}, "siteFlags", id="flag-name"),
        pytest.param(
            {"site_flags": {"a.com": {f"f{i}": True for i in range(MAX_FLAGS_PER_HOST + 1)}}},
            "siteFlags",
            id="too-many-flags",
        ),
        pytest.param(
            {"site_flags": {f"h{i}.example": {} for i in range(MAX_HOSTS + 1)}},
            "siteFlags",
            id="too-many-hosts",
        ),
        pytest.param(
            {"site_flags": {long_host(i): {"on": True} for i in range(40)}},
            "siteFlags",
            id="over-8KiB",
        ),
    ],
)
def test_an_invalid_put_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSettings) as caught:
        validate_put(put(**change))
    assert fields_of(caught) == [field]


def test_every_bad_field_is_reported_in_order_with_its_message() -> None:
    with pytest.raises(InvalidSettings) as caught:
        validate_put(PutBody(auto_pip="no", skip_seconds=0, site_flags=[]))
    assert fields_of(caught) == ["autoPip", "skipSeconds", "siteFlags"]
    assert str(caught.value) == (
        "autoPip: must be true or false; skipSeconds: must be an integer from 1 to 300; "
        "siteFlags: must be an object mapping host names to objects of boolean flags"
    )


def test_limits_are_inclusive() -> None:
    flags = {
        "a" * 63 + ".xn--bcher-kva.example": {f"F{i}_" + "x" * 28: True for i in range(16)},
        **{f"h{i}.example": {} for i in range(199)},
    }
    assert validate_put(put(skip_seconds=300, site_flags=flags)).settings.site_flags == flags
    assert validate_put(put(skip_seconds=1)).settings.skip_seconds == 1


def test_a_patch_sends_any_subset_and_may_remove_hosts() -> None:
    assert validate_patch(PatchBody()) == SettingsPatch()
    patch = validate_patch(PatchBody(skip_seconds=45, site_flags={"a.com": None}))
    assert patch == SettingsPatch(skip_seconds=45, site_flags={"a.com": None})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(PatchBody(auto_pip=None), "autoPip", id="autoPip-null"),
        pytest.param(PatchBody(skip_seconds=None), "skipSeconds", id="skip-null"),
        pytest.param(PatchBody(site_flags=None), "siteFlags", id="flags-null"),
        pytest.param(PatchBody(history_paused=None), "historyPaused", id="paused-null"),
        pytest.param(
            PatchBody(history_retention_days=14), "historyRetentionDays", id="retention-14"
        ),
        pytest.param(
            PatchBody(history_retention_days=[7]), "historyRetentionDays", id="retention-list"
        ),
        pytest.param(PatchBody(site_flags={"a.com:80": None}), "siteFlags", id="host-port"),
        pytest.param(PatchBody(site_flags={"a.com": {"on": None}}), "siteFlags", id="flag-null"),
    ],
)
def test_an_invalid_patch_names_the_field(body: PatchBody, field: str) -> None:
    with pytest.raises(InvalidSettings) as caught:
        validate_patch(body)
    assert fields_of(caught) == [field]


def test_merge_replaces_fields_and_site_flags_per_host() -> None:
    patch = SettingsPatch(
        skip_seconds=45,
        site_flags={"www.youtube.com": {"pip": True}, "vimeo.com": None, "twitch.tv": {}},
    )
    assert merge(SAVED, patch) == SettingsRow(
        auto_pip=True,
        skip_seconds=45,
        site_flags={"www.youtube.com": {"pip": True}, "twitch.tv": {}},
    )
    assert merge(SAVED, SettingsPatch()) == SAVED
    assert merge(SAVED, SettingsPatch(site_flags={"absent.example": None})) == SAVED
    assert merge(DEFAULT_SETTINGS, SettingsPatch(auto_pip=True)).auto_pip is True


def test_merge_sets_or_keeps_the_history_fields() -> None:
    chosen = attrs.evolve(SAVED, history_retention_days=7, history_paused=True)
    assert merge(chosen, SettingsPatch(skip_seconds=5)) == attrs.evolve(chosen, skip_seconds=5)
    back_to_five = validate_patch(PatchBody(history_retention_days=None))
    assert merge(chosen, back_to_five) == attrs.evolve(chosen, history_retention_days=None)
    resumed = validate_patch(PatchBody(history_paused=False))
    assert merge(chosen, resumed) == attrs.evolve(chosen, history_paused=False)
    assert merge(SAVED, validate_patch(PatchBody(history_retention_days=90))) == attrs.evolve(
        SAVED, history_retention_days=90
    )


def test_merge_leaves_the_current_document_alone() -> None:
    current = SettingsRow(auto_pip=False, skip_seconds=10, site_flags={"a.com": {"on": True}})
    merge(current, SettingsPatch(site_flags={"a.com": None, "b.com": {}}))
    assert current.site_flags == {"a.com": {"on": True}}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({f"n{i}.example": {} for i in range(60)}, id="hosts"),
        pytest.param({long_host(i): {"on": True} for i in range(20)}, id="size"),
    ],
)
def test_a_merge_past_the_limits_is_invalid(extra: dict[str, dict[str, bool]]) -> None:
    base = {long_host(100 + i) if i < 20 else f"h{i}.example": {"on": True} for i in range(150)}
    current = validate_put(put(site_flags=base)).settings
    patch = validate_patch(PatchBody(site_flags=extra))
    with pytest.raises(InvalidSettings) as caught:
        merge(current, patch)
    assert fields_of(caught) == ["siteFlags"]
    assert caught.value.errors[0].message.startswith("after merging: at most ")


def test_the_canonical_document_sorts_hosts_and_flags() -> None:
    assert canonical_document(SAVED) == {
        "autoPip": True,
        "skipSeconds": 20,
        "siteFlags": {
            "vimeo.com": {"x": True},
            "www.youtube.com": {"mute": False, "skipAds": True},
        },
        "historyRetentionDays": None,
        "historyPaused": False,
    }
    assert json_body(canonical_document(DEFAULT_SETTINGS)) == (
        b'{"autoPip":false,"skipSeconds":10,"siteFlags":{},'
        b'"historyRetentionDays":null,"historyPaused":false}'
    )


HOSTS = st.sampled_from(["a.com", "b.org", "www.youtube.com", "vimeo.com", "x-1.example"])
FLAG_MAPS = st.dictionaries(st.sampled_from(["on", "mute", "skipAds", "Z_9"]), st.booleans())


@given(st.dictionaries(HOSTS, FLAG_MAPS), st.randoms(use_true_random=False))
def test_equal_documents_have_equal_tags_whatever_the_key_order(
    flags: dict[str, dict[str, bool]], rng: Any
) -> None:
    items = [(host, list(host_flags.items())) for host, host_flags in flags.items()]
    rng.shuffle(items)
    for _, pairs in items:
        rng.shuffle(pairs)
    shuffled = {host: dict(pairs) for host, pairs in items}
    one = SettingsRow(auto_pip=True, skip_seconds=5, site_flags=flags)
    other = SettingsRow(auto_pip=True, skip_seconds=5, site_flags=shuffled)
    assert etag_for(json_body(canonical_document(one))) == etag_for(
        json_body(canonical_document(other))
    )


@given(st.dictionaries(HOSTS, FLAG_MAPS), st.dictionaries(HOSTS, st.none() | FLAG_MAPS))
def test_merge_is_a_per_host_update(
    current: dict[str, dict[str, bool]], change: dict[str, dict[str, bool] | None]
) -> None:
    merged = merge(
        SettingsRow(auto_pip=False, skip_seconds=10, site_flags=current),
        validate_patch(PatchBody(site_flags=change)),
    )
    expected = {**current, **{h: f for h, f in change.items() if f is not None}}
    for host in (h for h, f in change.items() if f is None):
        expected.pop(host, None)
    assert merged.site_flags == expected

"""network_refusals, bind_refusals, cidr: allow-lists parsed, not pattern-matched."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.networks import bind_refusals, cidr, network_refusals


def test_two_halves_of_the_internet_are_refused_by_name():
    # The deny-list check this replaces let 0.0.0.0/1 + 128.0.0.0/1 through.
    assert network_refusals(["0.0.0.0/1", "128.0.0.0/1"], "rehab_client_networks") == [
        "rehab_client_networks: 0.0.0.0/1 is wider than /8 (a /1 allows 2147483648 addresses)",
        "rehab_client_networks: 128.0.0.0/1 is wider than /8 (a /1 allows 2147483648 addresses)",
    ]


@pytest.mark.parametrize("value", ["172.30.10.0/24", "10.0.0.0/8", "10.0.0.5", "10.0.0.5/32", "fd00::/64", "fd00::5"])
def test_networks_within_the_bound_pass(value):
    assert network_refusals([value], "n") == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("::/0", "n: ::/0 is wider than /32"),
        ("fd00::/8", "n: fd00::/8 is wider than /32"),
        ("0.0.0.0/0", "n: 0.0.0.0/0 is wider than /8"),
        ("all", "n: 'all' is not an IP address or network"),
        (" 10.0.0.0/8", "n: ' 10.0.0.0/8' is not an IP address"),
        (10, "n: 10 is not an IP address"),
    ],
)
def test_bad_networks_are_named(value, message):
    (refusal,) = network_refusals([value], "n")
    assert refusal.startswith(message)


def test_bound_is_a_parameter_and_a_string_is_not_a_list():
    assert network_refusals(["10.0.0.0/16"], "n", min_prefix=24) == [
        "n: 10.0.0.0/16 is wider than /24 (a /16 allows 65536 addresses)"
    ]
    assert network_refusals("10.0.0.0/8", "n") == ["n: expected a list of networks, got '10.0.0.0/8'"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.0.0.0 ::", "redis_bind: '0.0.0.0 ::' is not one IP address"),
        ("0.0.0.0", "redis_bind: 0.0.0.0 listens on every interface; name the addresses instead"),  # noqa: S104
        ("::", "redis_bind: :: listens on every interface; name the addresses instead"),
        ("*", "redis_bind: '*' is not one IP address"),
        ("-::*", "redis_bind: '-::*' is not one IP address"),
        ("10.0.0.1/24", "redis_bind: '10.0.0.1/24' is not one IP address"),
        ("lab-app1", "redis_bind: 'lab-app1' is not one IP address"),
    ],
)
def test_bind_wildcards_and_non_addresses_are_refused(value, message):
    assert bind_refusals(["127.0.0.1", value], "redis_bind") == [message]


def test_concrete_binds_pass():
    assert bind_refusals(["127.0.0.1", "::1", "172.30.10.5", "fd00::5"], "redis_bind") == []


def test_cidr_gives_hosts_their_family_prefix_and_keeps_networks():
    assert cidr("172.30.10.5") == "172.30.10.5/32"
    assert cidr("fd00::5") == "fd00::5/128"  # was written as /32 before
    assert cidr("172.30.10.0/24") == "172.30.10.0/24"
    assert cidr("172.30.10.5/32") == "172.30.10.5/32"
    for bad in ("lab-pg1", "0.0.0.0 ::", 5):
        with pytest.raises(AnsibleFilterError, match="is not an IP address or network"):
            cidr(bad)

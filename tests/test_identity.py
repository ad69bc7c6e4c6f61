"""Voters are decided by the server (surlib/studio/identity.py): the client address (forwarded-for
only from a trusted proxy), or the signed-in account. Unit rules, then two real servers on
localhost: one trusting nobody, one trusting 127.0.0.1 as its proxy (so clients can play other
addresses through X-Forwarded-For)."""

import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from studio_server import FakePipe, add_pairs, serve  # noqa: E402

from surlib.studio.identity import (  # noqa: E402
    ProxyTrust, TrustError, VoterResolver, address_identity, voter_key)

SALT = "identity-test-salt"


# ----------------------------------------------------------------------------- rules
def test_trust_settings_parse():
    assert not ProxyTrust.parse("").enabled and not ProxyTrust.parse(None).enabled
    assert ProxyTrust.parse("2").hops == 2
    assert [str(n) for n in ProxyTrust.parse("10.0.0.0/8, ::1").networks] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(TrustError, match="'nginx' is neither"):
        ProxyTrust.parse("10.0.0.1, nginx")


@pytest.mark.parametrize("trust,peer,xff,client", [
    ("", "198.51.100.4", ["1.2.3.4"], "198.51.100.4"),                     # nobody trusted: header ignored
    ("10.0.0.0/8", "198.51.100.4", ["1.2.3.4"], "198.51.100.4"),           # peer is no proxy of ours
    ("10.0.0.0/8", "10.0.0.2", ["1.2.3.4"], "1.2.3.4"),                    # our proxy vouches
    ("10.0.0.0/8", "10.0.0.2", ["6.6.6.6, 1.2.3.4"], "1.2.3.4"),           # client-written entry ignored
    ("10.0.0.0/8", "10.0.0.2", ["6.6.6.6, 1.2.3.4", "10.0.0.9"], "1.2.3.4"),  # two proxies, two header lines
    ("10.0.0.0/8", "10.0.0.2", [], "10.0.0.2"),
    ("1", "10.16.3.80", ["6.6.6.6, 203.0.113.5"], "203.0.113.5"),          # Spaces: one hop
    ("2", "10.16.3.80", ["6.6.6.6, 203.0.113.5, 10.1.1.1"], "203.0.113.5"),
    ("1", "10.16.3.80", [], "10.16.3.80"),
])
def test_client_address(trust, peer, xff, client):
    assert ProxyTrust.parse(trust).client_address(peer, xff) == client


def test_address_identity_groups_ipv6_by_64():
    assert address_identity("203.0.113.5") == "ip:203.0.113.5"
    assert address_identity("::ffff:203.0.113.5") == "ip:203.0.113.5"
    a, b = address_identity("2001:db8:1:2::17"), address_identity("2001:db8:1:2:ffff::1")
    assert a == b == "ip:2001:db8:1:2::/64"  # one subscriber's /64 is one voter
    assert address_identity("2001:db8:1:3::17") != a
    assert address_identity("not-an-ip") == "addr:not-an-ip" and address_identity(None) == "addr:unknown"


def _request(host, xff=None, username=None):
    return SimpleNamespace(client=SimpleNamespace(host=host), username=username,
                           headers={"x-forwarded-for": xff} if xff else {})


def test_account_before_address_and_salted_keys():
    resolver = VoterResolver(SALT, ProxyTrust.parse("127.0.0.1"))
    by_address = resolver.voter(_request("127.0.0.1", "203.0.113.5"))
    assert by_address.kind == "address" and by_address.key == voter_key("ip:203.0.113.5", SALT)
    profile = {"preferred_username": "ada", "name": "Ada", "profile": "", "picture": ""}
    signed_in = resolver.voter(_request("127.0.0.1", "203.0.113.5"), profile)
    assert (signed_in.kind, signed_in.label) == ("account", "ada") and signed_in.key == voter_key("hf:ada", SALT)
    assert resolver.voter(_request("203.0.113.9"), profile).key == signed_in.key  # the account, anywhere
    assert resolver.voter(_request("203.0.113.9", username="bob")).key == voter_key("user:bob", SALT)
    assert VoterResolver("other-salt").voter(_request("203.0.113.5")).key != voter_key("ip:203.0.113.5", SALT)
    assert "203.0.113.5" not in by_address.key and len(by_address.key) == 64


def test_login_button_only_when_oauth_is_on(tmp_path, monkeypatch):
    import gradio.oauth

    import app
    from studio_server import write_suite
    from surlib.studio.settings import AppConfig
    from surlib.studio.studio import Studio

    # As on a Space with `hf_oauth: true` (what sets these): Gradio then adds its real OAuth routes
    # (outside a Space it mocks them with the machine's own Hugging Face login, which tests lack).
    for name, value in {"SYSTEM": "spaces", "SPACE_ID": "me/studio", "OAUTH_CLIENT_ID": "client", "OAUTH_CLIENT_SECRET": "secret",
                        "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": "https://huggingface.co"}.items():
        monkeypatch.setenv(name, value)
        if hasattr(gradio.oauth, name):  # read once when gradio.oauth is imported
            monkeypatch.setattr(gradio.oauth, name, value)
    suites = write_suite(tmp_path / "suites", [{"id": "t", "simple": "two red cats"}])
    for oauth in (False, True):
        cfg = AppConfig(preset="tiny", data_dir=tmp_path / f"d{oauth}", suites_dir=suites, oauth=oauth,
                        session_salt=SALT)
        studio = Studio.from_config(cfg, pipe=FakePipe())
        assert app.build_demo(studio).expects_oauth is oauth  # gr.LoginButton present
        studio.store.close()
    cfg = AppConfig(preset="tiny", data_dir=tmp_path / "req", suites_dir=suites, oauth=True, require_login=True,
                    session_salt=SALT)
    studio = Studio.from_config(cfg, pipe=FakePipe())
    with pytest.raises(ValueError, match="sign in with Hugging Face first"):
        studio.voter(_request("203.0.113.5"))
    assert studio.voter(_request("203.0.113.5"), {"preferred_username": "ada"}).kind == "account"
    studio.store.close()


# ----------------------------------------------------------------------------- real servers
@pytest.fixture(scope="module")
def untrusted(tmp_path_factory):
    demo, studio, cfg, url = serve(tmp_path_factory.mktemp("untrusted"), pipe=FakePipe(), votes_per_minute=5,
                                   pairs_per_minute=1000, session_salt=SALT)
    yield SimpleNamespace(url=url, studio=studio)
    demo.close()
    studio.store.close()


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory):
    demo, studio, cfg, url = serve(tmp_path_factory.mktemp("proxied"), pipe=FakePipe(), votes_per_minute=5,
                                   pairs_per_minute=3, trusted_proxies="127.0.0.1", session_salt=SALT)
    yield SimpleNamespace(url=url, studio=studio)
    demo.close()
    studio.store.close()


def _client(url, xff=None):
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": xff} if xff else None)


def _refusal(client, *args, api_name):
    from gradio_client.exceptions import AppError

    try:
        client.predict(*args, api_name=api_name)
    except AppError as e:
        return str(e)
    return None


def test_new_clients_and_rotated_session_hashes_are_the_same_voter(untrusted):
    key = voter_key("ip:127.0.0.1", SALT)
    ids = add_pairs(untrusted.studio, key, 5 + 12, adapter_side="right")
    first = _client(untrusted.url)
    for bid in ids[:5]:
        assert first.predict(bid, "tie", api_name="/vote")["choice"] == "tie"
    accepted = 0
    for i, bid in enumerate(ids[5:]):
        voter = _client(untrusted.url) if i % 2 == 0 else first
        if i % 2:
            voter.session_hash = f"rotated-{i}"  # what a script does to look like a new session
        message = _refusal(voter, bid, "tie", api_name="/vote")
        accepted += message is None
        assert message is None or "too many votes: at most 5 per minute per voter" in message
    assert accepted == 0
    assert untrusted.studio.store.vote_count(session=key) == 5
    numbers = _client(untrusted.url).predict("all", api_name="/results")[4]
    assert numbers["your_votes_all"] == 5  # "your votes" follows the address, not the session


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(untrusted):
    spoofer = _client(untrusted.url, "203.0.113.77")
    bid = spoofer.predict("", api_name="/new_battle")[3]
    assert untrusted.studio.store.get_battle(bid).session == voter_key("ip:127.0.0.1", SALT)


def test_behind_a_trusted_proxy_each_address_is_a_voter(behind_proxy):
    store = behind_proxy.studio.store
    ada, bob = _client(behind_proxy.url, "203.0.113.1"), _client(behind_proxy.url, "203.0.113.2")
    bid = ada.predict("", api_name="/new_battle")[3]
    assert store.get_battle(bid).session == voter_key("ip:203.0.113.1", SALT)
    assert "shown to another voter" in _refusal(bob, bid, "left", api_name="/vote")
    bob.session_hash = ada.session_hash  # copying the session hash buys nothing
    assert "shown to another voter" in _refusal(bob, bid, "left", api_name="/vote")
    assert store.get_vote(bid) is None
    spoof = _client(behind_proxy.url, "203.0.113.1, 198.51.100.7")  # proxy appended the real address last
    assert "shown to another voter" in _refusal(spoof, bid, "left", api_name="/vote")
    assert _client(behind_proxy.url, "203.0.113.1").predict(bid, "left", api_name="/vote")["choice"] == "left"


def test_the_pair_limit_holds_across_clients_of_one_address(behind_proxy):
    got = [_client(behind_proxy.url, "198.51.100.20").predict("", api_name="/new_battle")[3] for _ in range(3)]
    assert len(set(got)) == 3
    extra = [_refusal(_client(behind_proxy.url, "198.51.100.20"), "", api_name="/new_battle") for _ in range(4)]
    assert all(m and "too many new pairs: at most 3 per minute per voter" in m for m in extra)
    assert _client(behind_proxy.url, "198.51.100.21").predict("", api_name="/new_battle")[3]

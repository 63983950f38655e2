"""The token keeper: X's and LinkedIn's expiring OAuth 2.0 tokens, refreshed, saved, reported."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import attrs
import cattrs
import httpx
import pytest
import trio

from ringbearer import _converter
from ringbearer._delivery import Delivered, Outcome, Permanent, Retry, Taken
from ringbearer._httpserver import HttpRequest
from ringbearer._secrets import Secret, SecretRef
from ringbearer.integrations import Verdict, social
from ringbearer.integrations._base import ProviderKind, ReadOnly
from ringbearer.integrations._oauth2 import (
    ClientAuth,
    RefreshGrant,
    TokenKeeper,
    TokenSet,
)
from ringbearer.integrations.social import LinkedInSettings, XSettings, refresh_grant
from ringbearer.privacy import new_data_key, open_sealed, seal
from ringbearer.simulator import SimulatorState
from ringbearer.simulator import _linkedin as sim_linkedin
from ringbearer.simulator import _x as sim_x
from ringbearer.simulator._faults import Faults

from . import kit

T0 = kit.T0
SIM = "http://sim.test"
CLIENT = "ringbearer-client"
KEYS = {"SEED": "unused", "LI_SECRET": "li-client-secret", "X_SECRET": "x-client-secret"}
AUTHOR = "urn:li:organization:123456789"
X_REFRESH = 7200 - 720  # a tenth of the two hours is more than five minutes
LI_REFRESH = 60 * 86_400 - 6 * 86_400


def ref(name: str) -> SecretRef:
    return SecretRef(env=name)


def wall() -> float:
    """The wall clock of keeper and simulator alike: trio's (mock) clock from T0."""
    return T0 + trio.current_time()


# --- fakes: the store, the vault, the simulator without a network --------------------


@attrs.define
class FakeStore:
    """Keeps the sealed text; every save goes into the shared log, in order."""

    log: list[tuple[str, str]]
    saved: dict[str, str] = attrs.Factory(dict)
    refusals: int = 0  # the next saves that fail
    gate: trio.Event | None = None  # when given, a save returns only once it is set

    async def load_token(self, integration: str) -> str | None:
        await trio.lowlevel.checkpoint()
        return self.saved.get(integration)

    async def save_token(self, integration: str, sealed: str) -> None:
        await trio.lowlevel.checkpoint()
        if self.gate is not None:
            await self.gate.wait()
        if self.refusals:
            self.refusals -= 1
            raise OSError("disk full")
        self.saved[integration] = sealed
        self.log.append(("saved", sealed))


@attrs.define
class FakeSealer:
    """AES-256-GCM under one key, bound to the name, as the daemon's vault seals."""

    key: bytes = attrs.Factory(new_data_key)

    async def seal_text(self, name: str, text: str) -> str:
        await trio.lowlevel.checkpoint()
        return base64.b64encode(seal(self.key, text.encode(), name)).decode()

    async def open_text(self, name: str, sealed: str) -> str:
        await trio.lowlevel.checkpoint()
        return open_sealed(self.key, base64.b64decode(sealed), name).decode()

    def peek(self, integration: str, sealed: str) -> TokenSet:
        name = f"oauth2 token set {integration}"
        return TokenSet.from_text(open_sealed(self.key, base64.b64decode(sealed), name).decode())


@attrs.define
class Rig:
    """The simulator's providers behind a mock transport, and everything the test watches."""

    state: SimulatorState
    log: list[tuple[str, str]] = attrs.Factory(list)  # ("saved"|"presented"|"sent", value)
    times: list[float] = attrs.Factory(list)  # when each refresh was asked for
    problems: list[tuple[str, str]] = attrs.Factory(list)
    sealer: FakeSealer = attrs.Factory(FakeSealer)
    store: FakeStore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.store = FakeStore(self.log)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        provider, _, rest = request.url.path[1:].partition("/")
        body = await request.aread()
        self._note(request, body)
        headers = {k.lower(): v for k, v in request.headers.items()}
        seen = HttpRequest(
            request.method,
            request.url.raw_path.decode(),
            request.url.path,
            request.url.query.decode(),
            headers,
            body,
        )
        endpoint = self.state.endpoint(provider)
        assert endpoint is not None
        answer = await endpoint.answer(seen, "/" + rest)
        return httpx.Response(answer.status, headers=list(answer.headers), content=answer.body)

    def _note(self, request: httpx.Request, body: bytes) -> None:
        if "token" in request.url.path.lower():
            self.times.append(trio.current_time())
            self.log.append(("presented", parse_qs(body.decode())["refresh_token"][0]))
        else:
            self.log.append(("sent", request.headers.get("authorization", "")))

    def on_problem(self, integration: str, words: str) -> None:
        self.problems.append((integration, words))

    def keeper(
        self, http: httpx.AsyncClient, grant: RefreshGrant, store: FakeStore | None = None
    ) -> TokenKeeper:
        integration = "x" if "/x/" in grant.url else "linkedin"
        return TokenKeeper(
            integration,
            grant,
            store or self.store,
            self.sealer,
            http,
            self.on_problem,
            wall=wall,
        )

    def presented(self) -> list[str]:
        return [value for kind, value in self.log if kind == "presented"]

    def saved_access(self, integration: str = "x") -> list[str]:
        return [
            self.sealer.peek(integration, value).access.reveal()
            for kind, value in self.log
            if kind == "saved"
        ]


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    state = SimulatorState(seed=13)
    state.endpoints["x"].logic.clock = wall  # type: ignore[attr-defined]
    state.endpoints["linkedin"].logic.clock = wall  # type: ignore[attr-defined]
    made = Rig(state)
    async with httpx.AsyncClient(transport=httpx.MockTransport(made.handle)) as http:
        yield made, http


def x_logic(rig: Rig) -> Any:
    return rig.state.endpoints["x"].logic


def x_grant(seed: str, secret: str | None = None) -> RefreshGrant:
    return RefreshGrant(
        url=f"{SIM}/x/2/oauth2/token",
        client_id=CLIENT,
        seed=Secret(seed),
        client_secret=None if secret is None else Secret(secret),
    )


def li_grant(seed: str) -> RefreshGrant:
    return RefreshGrant(
        url=f"{SIM}/linkedin/oauth/v2/accessToken",
        client_id=CLIENT,
        seed=Secret(seed),
        client_secret=Secret("li-client-secret"),
        client_auth=ClientAuth.BODY,
    )


def expire(rig: Rig, token: Secret | None) -> None:
    """The simulator treats ``token`` as expired (as if X had revoked it early)."""
    assert token is not None
    tokens = x_logic(rig).access_tokens
    tokens[token.reveal()] = attrs.evolve(tokens[token.reveal()], expires_at=0.0)


def no_token_in(words: str, *tokens: str) -> bool:
    return not any(token in words for token in tokens)


# --- refreshing -----------------------------------------------------------------------


async def test_seeds_once_then_refreshes_ahead_of_expiry(
    rig: tuple[Rig, httpx.AsyncClient], nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """Seeded at start; refreshed at 6480 s of 7200 (a tenth of the life left), not before."""
    sim, http = rig
    seed = x_logic(sim).authorize(CLIENT)
    keeper = sim.keeper(http, x_grant(seed))
    await keeper.start()
    first = keeper.current()
    assert first is not None and keeper.remaining() == 7200
    nursery.start_soon(keeper.run)
    await trio.sleep(X_REFRESH - 1)
    assert keeper.current() == first and len(sim.presented()) == 1
    await trio.sleep(2)
    assert keeper.current() not in (None, first)
    assert keeper.remaining() == 7199  # issued at 6480 s, now 6481 s
    assert sim.presented()[0] == seed and sim.presented()[1] != seed
    assert keeper.statistics().refreshes == 2 and sim.problems == []


async def test_the_new_set_is_saved_before_its_first_use(
    rig: tuple[Rig, httpx.AsyncClient], nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """While the store is still saving a new set, posts carry the old token; after, the new."""
    sim, http = rig
    keeper = sim.keeper(http, x_grant(sim_x.SANDBOX_SEED))
    adapter = x_adapter(http, sim, keeper)
    await keeper.start()
    first = keeper.current()
    assert first is not None
    sim.store.gate = trio.Event()
    nursery.start_soon(keeper.run)
    await trio.sleep(X_REFRESH + 1)  # refreshed; the save has not returned
    assert len(sim.presented()) == 2

    assert isinstance(await kit.deliver_one(adapter, kit.envelope({"text": "a"})), Delivered)
    assert sim.log[-1] == ("sent", f"Bearer {first.reveal()}")
    sim.store.gate.set()
    await trio.sleep(1)
    assert isinstance(await kit.deliver_one(adapter, kit.envelope({"text": "b"})), Delivered)

    second = keeper.current()
    assert second is not None and second != first
    assert sim.log[-1] == ("sent", f"Bearer {second.reveal()}")
    assert sim.saved_access()[-1] == second.reveal()
    assert second.reveal() not in sim.store.saved["x"]  # sealed


async def test_a_restart_uses_the_saved_refresh_token_not_the_seed(
    rig: tuple[Rig, httpx.AsyncClient], autojump_clock: trio.abc.Clock
) -> None:
    """A keeper started from the saved set presents the saved refresh token; the seed is spent."""
    sim, http = rig
    seed = x_logic(sim).authorize(CLIENT)
    async with trio.open_nursery() as nursery:
        first = sim.keeper(http, x_grant(seed))
        await first.start()
        nursery.start_soon(first.run)
        await trio.sleep(X_REFRESH + 1)
        nursery.cancel_scope.cancel()
    held = first.current()
    spent = sim.presented()
    assert len(spent) == 2

    restarted = sim.keeper(http, x_grant(seed))
    await restarted.start()
    assert restarted.current() == held and sim.presented() == spent  # loaded, not redeemed
    with trio.move_on_after(X_REFRESH + 1):
        await restarted.run()
    assert sim.presented()[2] not in spent and sim.presented().count(seed) == 1
    assert sim.problems == [] and restarted.statistics().refreshes == 1


async def test_a_reused_refresh_token_revokes_the_family_and_is_reported(
    rig: tuple[Rig, httpx.AsyncClient], autojump_clock: trio.abc.Clock
) -> None:
    """A set restored from an old backup presents a spent token: X revokes all; on_problem hears."""
    sim, http = rig
    keeper = sim.keeper(http, x_grant(x_logic(sim).authorize(CLIENT)))
    await keeper.start()
    backup = dict(sim.store.saved)
    with trio.move_on_after(X_REFRESH + 1):
        await keeper.run()
    alive = keeper.current()
    assert alive is not None

    old = sim.keeper(http, keeper.grant, FakeStore(sim.log, backup))
    with trio.move_on_after(1):
        await old.run()

    [(integration, words)] = sim.problems[:1]
    assert integration == "x" and "spent, revoked or expired" in words
    assert old.statistics().reconnect
    assert "Value passed for the token was invalid." in words
    every_token = [value for kind, value in sim.log if kind == "presented"] + [alive.reveal()]
    assert no_token_in(words, *every_token)
    assert wall() < x_logic(sim).access_tokens[alive.reveal()].expires_at  # in time, yet
    assert x_logic(sim).families[0].revoked  # its family is gone
    assert isinstance(
        await kit.deliver_one(x_adapter(http, sim, keeper), kit.envelope({"text": "late"})),
        Retry,
    )


async def test_a_failed_refresh_keeps_the_old_token_until_it_expires(
    rig: tuple[Rig, httpx.AsyncClient], nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """During an outage: reported, retried with growing waits, the old token used to its end."""
    sim, http = rig
    keeper = sim.keeper(http, x_grant(sim_x.SANDBOX_SEED))
    await keeper.start()
    first = keeper.current()
    sim.state.endpoints["x"].slot.faults = Faults(outage=True)
    nursery.start_soon(keeper.run)
    await trio.sleep(7199)
    assert keeper.current() == first and keeper.remaining() == 1
    assert sim.problems and all("HTTP 503" in words for _, words in sim.problems)
    await trio.sleep(2)
    assert keeper.current() is None and keeper.remaining() == 0
    gaps = [b - a for a, b in zip(sim.times[1:], sim.times[2:], strict=False)]
    assert gaps == sorted(gaps) and gaps[0] == 5 and max(gaps) == 300

    sim.state.endpoints["x"].slot.faults = Faults()
    await trio.sleep(300)
    assert keeper.current() not in (None, first)
    assert keeper.statistics().failures == 0
    assert keeper.statistics().failures_total == len(sim.problems)


async def test_a_set_the_store_refused_is_saved_again_and_its_spent_token_never_presented(
    rig: tuple[Rig, httpx.AsyncClient], nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """The store fails once: the issued set waits aside; the old token stays in use meanwhile."""
    sim, http = rig
    keeper = sim.keeper(http, x_grant(sim_x.SANDBOX_SEED))
    await keeper.start()
    first = keeper.current()
    sim.store.refusals = 1
    nursery.start_soon(keeper.run)
    await trio.sleep(X_REFRESH + 1)
    assert keeper.current() == first
    [(_, words)] = sim.problems
    assert "could not be saved (OSError)" in words
    await trio.sleep(5)  # the first backoff
    assert keeper.current() not in (None, first)
    assert len(sim.presented()) == len(set(sim.presented())) == 2
    assert sim.saved_access()[-1] == keeper.current().reveal()  # type: ignore[union-attr]


# --- the providers with a keeper ---------------------------------------------------------


def row(kind: str, keepers: social.Keepers = lambda name: None) -> ProviderKind:
    """The social family's row for ``kind``, its providers given ``keepers``."""
    return {found.kind: found for found in social.kinds(keepers)}[kind]


def x_adapter(http: httpx.AsyncClient, sim: Rig, keeper: TokenKeeper) -> Any:
    settings = XSettings(auth="oauth2", refresh_token=ref("SEED"), client_id=CLIENT)
    ctx = kit.context(KEYS, sim.handle, name="x", base_url_override=f"{SIM}/x")
    return row("x", lambda name: keeper if name == "x" else None).build(settings, ctx)


async def test_a_401_is_retried_after_a_forced_refresh_once_in_a_row(
    rig: tuple[Rig, httpx.AsyncClient], nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """Refused token: Retry and refresh now; the new token refused too before any success: 401."""
    sim, http = rig
    keeper = sim.keeper(http, x_grant(sim_x.SANDBOX_SEED))
    adapter = x_adapter(http, sim, keeper)
    await keeper.start()
    nursery.start_soon(keeper.run)
    first = keeper.current()
    expire(sim, first)

    outcome = await kit.deliver_one(adapter, kit.envelope({"text": "one"}))

    assert kit.retry(Taken.NO)(outcome) and outcome.status == 401
    await trio.sleep(1)
    second = keeper.current()
    assert second not in (None, first) and len(sim.presented()) == 2  # long before 6480 s
    expire(sim, second)
    assert _permanent_401(await kit.deliver_one(adapter, kit.envelope({"text": "two"})))
    assert len(sim.presented()) == 2  # no refresh forced again


async def test_a_success_ends_the_row_of_refusals(
    rig: tuple[Rig, httpx.AsyncClient], nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """After a post succeeds with the forced token, its own refusal forces a refresh again."""
    sim, http = rig
    keeper = sim.keeper(http, x_grant(sim_x.SANDBOX_SEED))
    adapter = x_adapter(http, sim, keeper)
    await keeper.start()
    nursery.start_soon(keeper.run)
    expire(sim, keeper.current())
    assert isinstance(await kit.deliver_one(adapter, kit.envelope({"text": "a"})), Retry)
    await trio.sleep(1)
    assert isinstance(await kit.deliver_one(adapter, kit.envelope({"text": "b"})), Delivered)
    expire(sim, keeper.current())
    assert isinstance(await kit.deliver_one(adapter, kit.envelope({"text": "c"})), Retry)
    await trio.sleep(1)
    assert len(sim.presented()) == 3


def _permanent_401(outcome: Outcome) -> bool:
    return isinstance(outcome, Permanent) and outcome.status == 401


async def test_linkedin_keeps_its_refresh_token_and_posts_with_the_access_token(
    rig: tuple[Rig, httpx.AsyncClient], nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """LinkedIn: secret in the body, the same refresh token back, refreshed 6 days before day 60."""
    sim, http = rig
    keeper = sim.keeper(http, li_grant(sim_linkedin.SANDBOX_SEED))
    settings = LinkedInSettings(
        author=AUTHOR,
        version="202601",
        refresh_token=ref("SEED"),
        client_id=CLIENT,
        client_secret=ref("LI_SECRET"),
    )
    ctx = kit.context(KEYS, sim.handle, name="li", base_url_override=f"{SIM}/linkedin")
    adapter = row("linkedin", lambda name: keeper).build(settings, ctx)
    await keeper.start()
    nursery.start_soon(keeper.run)
    assert keeper.remaining() == 60 * 86_400
    assert keeper.statistics().refresh_remaining_seconds == 365 * 86_400
    first = keeper.current()
    assert isinstance(await kit.deliver_one(adapter, kit.envelope({"text": "hi"})), Delivered)
    await trio.sleep(LI_REFRESH + 1)
    assert keeper.current() not in (None, first)
    assert sim.presented() == [sim_linkedin.SANDBOX_SEED] * 2
    assert isinstance(await kit.deliver_one(adapter, kit.envelope({"text": "again"})), Delivered)
    assert sim.log[-1] == ("sent", f"Bearer {keeper.current().reveal()}")  # type: ignore[union-attr]


# --- settings, grants, the token set ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw", "ok"),
    [
        ("x", {"auth": "oauth2", "refresh_token": {"env": "R"}, "client_id": "c"}, True),
        ("x", {"auth": "oauth2", "refresh_token": {"env": "R"}}, False),  # no client_id
        ("x", {"auth": "oauth2"}, False),  # no token at all
        (
            "x",
            {"auth": "oauth2", "access_token": {"env": "A"}, "refresh_token": {"env": "R"}},
            False,
        ),
        ("x", {"auth": "oauth2", "access_token": {"env": "A"}, "client_id": "c"}, False),
        (
            "x",
            {
                "auth": "oauth1",
                "access_token": {"env": "A"},
                "access_token_secret": {"env": "B"},
                "consumer_key": {"env": "C"},
                "consumer_secret": {"env": "D"},
                "refresh_token": {"env": "R"},
            },
            False,
        ),
        (
            "linkedin",
            {
                "author": AUTHOR,
                "version": "202601",
                "refresh_token": {"env": "R"},
                "client_id": "c",
                "client_secret": {"env": "S"},
            },
            True,
        ),
        (
            "linkedin",
            {
                "author": AUTHOR,
                "version": "202601",
                "refresh_token": {"env": "R"},
                "client_id": "c",
            },
            False,  # LinkedIn wants the secret in the body
        ),
    ],
)
def test_settings_take_a_refresh_token_with_its_client(
    kind: str, raw: dict[str, Any], ok: bool
) -> None:
    """One of access or refresh token; a refresh token brings the client keys it needs."""
    settings_type = row(kind).settings_type
    structure = _converter.make().structure
    if ok:
        assert isinstance(structure(raw, settings_type), settings_type)
    else:
        with pytest.raises(cattrs.BaseValidationError):
            structure(raw, settings_type)


def test_grants_in_the_sandbox_and_their_client_auth() -> None:
    """The sandbox aims at the simulator's token path; X sends Basic, LinkedIn a body secret."""
    x = XSettings(
        auth="oauth2", refresh_token=ref("SEED"), client_id=CLIENT, client_secret=ref("X_SECRET")
    )
    grant = refresh_grant(x, kit.context(KEYS, base_url_override=f"{SIM}/x/"))
    assert grant is not None and grant.url == f"{SIM}/x/2/oauth2/token"
    assert grant.form(Secret("r")) == {
        "grant_type": "refresh_token",
        "refresh_token": "r",
        "client_id": CLIENT,
    }
    basic = base64.b64encode(f"{CLIENT}:x-client-secret".encode()).decode()
    assert grant.headers() == {"Authorization": f"Basic {basic}"}
    li = LinkedInSettings(
        author=AUTHOR,
        version="202601",
        refresh_token=ref("SEED"),
        client_id=CLIENT,
        client_secret=ref("LI_SECRET"),
    )
    li_real = refresh_grant(li, kit.context(KEYS))
    assert li_real is not None and li_real.url == "https://www.linkedin.com/oauth/v2/accessToken"
    assert (
        li_real.headers() == {} and li_real.form(Secret("r"))["client_secret"] == "li-client-secret"
    )
    static = XSettings(auth="oauth2", access_token=ref("SEED"))
    assert refresh_grant(static, kit.context(KEYS)) is None


def test_a_token_set_round_trips_and_hides_its_tokens() -> None:
    """The text form round-trips; repr shows neither token."""
    tokens = TokenSet(Secret("at-1"), Secret("rt-1"), T0, T0 + 7200, None, "mark")
    assert TokenSet.from_text(tokens.to_text()) == tokens
    assert tokens.refresh_at == T0 + 7200 - 720
    assert "at-1" not in repr(tokens) and "rt-1" not in repr(tokens)


def test_preflight_without_a_keeper_warns_instead_of_redeeming_the_seed() -> None:
    """From the config alone, X's probe sends no token and reads the 401 as unchecked."""
    settings = XSettings(auth="oauth2", refresh_token=ref("SEED"), client_id=CLIENT)
    probe = row("x").probe
    assert isinstance(probe, ReadOnly)
    call = probe.call(settings, kit.context(KEYS))
    assert "Authorization" not in call.headers
    request = httpx.Request("GET", call.url, headers=call.headers)
    response = httpx.Response(401, json={"title": "Unauthorized"}, request=request)
    assert probe.read(settings, response).verdict is Verdict.WARN

"""What keeps one tenant's incident from reaching past its leak, on the fakes: weak values are not
denylisted, a cluster-wide list only from the operator's namespace, the revocation check dials only
allow-listed hosts, and Rotor's record of the lists is the one that counts."""

from __future__ import annotations

import asyncio
import base64
import json

from rotor.api import keys
from rotor.planning.hashing import value_hmac
from rotor.planning.incident_denylist import EVERYWHERE

from .harness import HMAC_KEY, NS, STATE, World


def test_a_value_too_common_to_identify_a_credential_is_not_denylisted_and_the_status_says_why() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "postgres", "endpoint": "https://api.example"})
        key = world.incident({})
        await world.until("contained")
        status = world.stored()
        assert status["denylist"] == [] and ("incident", world.uid(key)) not in world.sources.denylists
        assert world.record() == {}
        refused = next(c for c in status["conditions"] if c["type"] == keys.DENYLIST_REFUSED)
        assert refused["status"] == "True" and refused["reason"] == keys.NOT_IDENTIFYING
        assert refused["message"].endswith("password: a common value (a default user, password, host or word)")
        contained = next(c for c in status["conditions"] if c["type"] == "Contained")
        assert contained["status"] == "False" and contained["reason"] == keys.NOT_IDENTIFYING
        assert ("Warning", keys.DENYLIST_REFUSED) in [(e["type"], e["reason"]) for e in world.kube.events]
        text = json.dumps(status) + json.dumps(world.kube.events)
        assert '"postgres"' not in text and value_hmac(HMAC_KEY, b"postgres") not in text
        await world.until("identified")  # the runbook goes on: the rotation replaces the value

    asyncio.run(main())


def test_short_values_are_refused_per_key_and_strong_ones_still_listed() -> None:
    async def main() -> None:
        world = World()
        world.source({"token": "tok-8c7b6a5f", "apiKey": "1234"})
        world.incident({"response": {"key": "apiKey"}}, name="weak")
        await world.until("contained", (NS, "weak"))
        refused = next(c for c in world.stored((NS, "weak"))["conditions"] if c["type"] == keys.DENYLIST_REFUSED)
        assert "apiKey: shorter than 8 characters" in refused["message"]
        world.incident({"response": {"key": "token"}}, name="strong")
        status = await world.until("contained", (NS, "strong"))
        assert value_hmac(HMAC_KEY, b"tok-8c7b6a5f") in status["denylist"]

    asyncio.run(main())


def test_only_an_incident_in_the_operators_namespace_denylists_cluster_wide() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        tenant = world.incident({})
        await world.until("contained", tenant)
        assert world.sources.scopes[("incident", world.uid(tenant))] == world.engine.denylists.scope(
            NS, f"vault:default/secret/{NS}/db")
        # The same report from Rotor's own namespace (which tenants cannot write) reaches every source.
        world.sources.sources[(STATE[0], "db")] = world.sources.sources[(NS, "db")]
        operator = world.incident({}, namespace=STATE[0])
        status = await world.until("contained", operator)
        assert world.sources.scopes[("incident", world.uid(operator))] == EVERYWHERE
        assert status["denylistScope"] == "cluster-wide: every SecretSource in every namespace"

    asyncio.run(main())


def _dynamic(world: World, host: str, port: str = "5432") -> None:
    world.source({"username": "v-app-1", "password": "pw-0f9e8d7c", "host": host, "port": port})
    world.policy({"strategy": "dynamic", "dynamic": {"role": "app"}})
    world.logins.accepted.add(("v-app-1", "pw-0f9e8d7c"))


def test_the_revocation_check_dials_no_host_the_operator_did_not_allow_list() -> None:
    async def main() -> None:
        world = World()
        _dynamic(world, "10.0.0.7")
        world.incident({})
        status = await world.until("revoked")
        assert world.logins.tried == []  # nothing dialled
        assert status["revocation"]["confirmed"] is None
        assert status["revocation"]["check"] == ("not confirmed: host not allow-listed (operator setting "
                                                 "vault_connections.default.login_check_hosts)")
        assert "10.0.0.7" not in json.dumps(status)

    asyncio.run(main())


def test_a_host_list_is_refused_one_host_per_attempt() -> None:
    async def main() -> None:
        world = World()
        _dynamic(world, "db.example,db,10.0.0.1,10.0.0.2")
        world.incident({})
        status = await world.until("revoked")
        assert world.logins.tried == []
        assert status["revocation"]["check"] == "not confirmed: a host list is refused (one host per attempt)"

    asyncio.run(main())


def test_an_allow_listed_host_is_dialled_once_and_the_answer_counts() -> None:
    async def main() -> None:
        world = World()
        _dynamic(world, "db.example")
        world.incident({})
        status = await world.until("revoked")
        assert world.logins.tried == [("db.example", 5432, "postgres", "v-app-1")]
        assert status["revocation"]["confirmed"] is False  # the fake database still accepts it

    asyncio.run(main())


def test_the_record_is_re_read_so_an_operators_removal_lifts_a_deleted_incidents_list() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        key = world.incident({})
        await world.until("contained")
        uid = world.uid(key)
        world.kube.objects.pop(("leakincidents", *key))
        world.engine.forget(key)
        secret = world.kube.get("secrets", *STATE) or {}
        record = json.loads(base64.b64decode(secret["data"]["denylists"]))
        del record["entries"][uid]  # the operator's explicit action
        secret["data"]["denylists"] = base64.b64encode(json.dumps(record).encode()).decode()
        world.kube.put("secrets", secret)
        assert ("incident", uid) in world.sources.denylists
        assert await world.engine.step("denylists") == 60.0
        assert ("incident", uid) not in world.sources.denylists
        kept = world.kube.secret(*STATE)
        assert kept is not None and kept.data["hmac-key"] == HMAC_KEY  # the key itself is never touched

    asyncio.run(main())


def test_a_lost_record_secret_keeps_the_list_enforced_and_retries() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        key = world.incident({})
        world.kube.objects.pop(("secrets", *STATE))
        assert await world.step() == 5.0
        assert "missing: restore it from backup" in world.ready()["message"]
        assert ("incident", world.uid(key)) in world.sources.denylists  # enforced meanwhile
        assert "contained" not in world.stored()["timestamps"]

    asyncio.run(main())


def test_a_record_gone_or_unreadable_at_runtime_never_lifts_what_is_enforced() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        key = world.incident({})
        await world.until("contained")
        owner = ("incident", world.uid(key))
        secret = world.kube.get("secrets", *STATE) or {}
        secret["data"]["denylists"] = base64.b64encode(b"{not json").decode()
        world.kube.put("secrets", secret)
        assert await world.engine.step("denylists") == 30.0
        assert owner in world.sources.denylists
        world.kube.objects.pop(("secrets", *STATE))
        assert await world.engine.step("denylists") == 30.0
        assert owner in world.sources.denylists

    asyncio.run(main())

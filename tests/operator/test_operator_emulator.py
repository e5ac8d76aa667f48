"""The gaps ``EmberEmulator`` fills in kmock's Kubernetes API emulator, checked over HTTP.

kmock emulates the Kubernetes API server because no real one exists on these
machines; the operator tests rely on these behaviours of a real API server.
"""

import asyncio
import json
from typing import Any

import pytest
from ember_kmock import EmberEmulator, declare_resources, selector_matches

pytestmark = [
    pytest.mark.kmock(cls=EmberEmulator),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]

PODS = "/api/v1/namespaces/ns/pods"


async def call(kmock: EmberEmulator, method: str, path: str, body: Any = None,
               content_type: str = "application/json") -> tuple[int, Any]:
    async with kmock.request(method, path, json=body, headers={"Content-Type": content_type}) as response:
        return response.status, await response.json(content_type=None)


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


async def test_create_fills_metadata_and_answers_201(kmock: EmberEmulator) -> None:
    declare_resources(kmock)
    status, created = await call(kmock, "POST", PODS, pod("a"))
    assert status == 201
    meta = created["metadata"]
    assert meta["namespace"] == "ns" and meta["uid"] and meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) > 0 and meta["generation"] == 1
    assert created["status"]["phase"] == "Pending"
    status, event = await call(kmock, "POST", "/api/v1/namespaces/ns/events",
                               {"metadata": {"generateName": "a."}, "reason": "R"})
    assert status == 201 and event["metadata"]["name"].startswith("a.")


async def test_writes_bump_resource_version_and_spec_changes_bump_generation(kmock: EmberEmulator) -> None:
    declare_resources(kmock)
    _, created = await call(kmock, "POST", PODS, pod("a"))
    _, patched = await call(kmock, "PATCH", f"{PODS}/a", {"spec": {"priority": 1}},
                            "application/merge-patch+json")
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert patched["metadata"]["generation"] == 2
    _, status_only = await call(kmock, "PATCH", f"{PODS}/a/status", {"status": {"phase": "Running"}},
                                "application/merge-patch+json")
    assert status_only["metadata"]["generation"] == 2


async def test_failed_json_patch_test_answers_422(kmock: EmberEmulator) -> None:
    declare_resources(kmock)
    await call(kmock, "POST", PODS, pod("a"))
    status, _ = await call(kmock, "PATCH", f"{PODS}/a",
                           [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}],
                           "application/json-patch+json")
    assert status == 422


async def test_list_reports_a_version_and_filters_by_labels(kmock: EmberEmulator) -> None:
    declare_resources(kmock)
    await call(kmock, "POST", PODS, pod("a", app="x"))
    await call(kmock, "POST", PODS, pod("b", app="y"))
    status, listing = await call(kmock, "GET", f"{PODS}?labelSelector=app%3Dx")
    assert status == 200 and [p["metadata"]["name"] for p in listing["items"]] == ["a"]
    assert int(listing["metadata"]["resourceVersion"]) >= 2


async def test_watch_replays_only_newer_objects_then_streams(kmock: EmberEmulator) -> None:
    declare_resources(kmock)
    await call(kmock, "POST", PODS, pod("old"))
    _, listing = await call(kmock, "GET", PODS)
    since = listing["metadata"]["resourceVersion"]
    await call(kmock, "POST", PODS, pod("new"))
    async with kmock.request("GET", f"{PODS}?watch=true&resourceVersion={since}") as response:
        first = json.loads(await asyncio.wait_for(response.content.readline(), 5))
        await call(kmock, "DELETE", f"{PODS}/new")
        second = json.loads(await asyncio.wait_for(response.content.readline(), 5))
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "new")
    assert (second["type"], second["object"]["metadata"]["name"]) == ("DELETED", "new")
    assert int(second["object"]["metadata"]["resourceVersion"]) > \
        int(first["object"]["metadata"]["resourceVersion"])


def test_selectors() -> None:
    labels = {"a": "1", "b": "2"}
    assert selector_matches(labels, "a=1,b==2")
    assert selector_matches(labels, "a,!c,b!=3")
    assert not selector_matches(labels, "a=2")
    assert not selector_matches(labels, "!a")
    assert selector_matches(labels, None)

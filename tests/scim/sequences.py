"""Replays the SCIM request sequences of Okta and Entra ID against a directory, with
the scim2-client library (PyPI), as their public provisioning documentation
describes them:

- Okta: https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20
  (look the user up by userName, POST it, PUT profile changes, PATCH `active`;
  POST a group, PATCH members in and out in batches, PATCH the name, DELETE).
- Entra ID: https://learn.microsoft.com/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
  (capitalised ops, `active` as the string "False", no-path replace with a map of
  attribute paths, `emails[type eq "work"].value`, the enterprise extension's
  `manager` as a bare id, groups listed with excludedAttributes=members, member
  removal with a value list).

Usage: sequences.py <okta|entra> <base url> <bearer token>
Prints a JSON summary of the ids it made; exits non-zero at the first answer that
is not what the IdP expects.
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"

idp, base, token = sys.argv[1], sys.argv[2], sys.argv[3]
http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
scim = SyncSCIMClient(http)
scim.discover()


def expect(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def raw(method, path, body=None, status=200, params=None):
    """A request exactly as the IdP sends it (scim2-client's raw access)."""
    kwargs = {"params": params or {}}
    if body is not None:
        kwargs["json"] = body
    r = scim.request(method, path, **kwargs)
    expect(r.status_code == status, f"{method} {path}: {r.status_code} {r.text}")
    return r.json() if r.text else None


def lookup(user_name):
    found = scim.query("User", query_parameters={"filter": f'userName eq "{user_name}"', "startIndex": 1, "count": 100})
    return found.resources or []


def patch(kind, id, ops, status=200):
    return raw("PATCH", f"/{kind}/{id}", {"schemas": [PATCH], "Operations": ops}, status=status)


def okta():
    expect(lookup("ada@acme.test") == [], "a user not yet pushed is not found")
    user = {
        "schemas": [USER], "userName": "ada@acme.test", "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"primary": True, "value": "ada@acme.test", "type": "work"}], "displayName": "Ada Lovelace",
        "locale": "en-US", "externalId": "00u1ada", "groups": [], "password": "pushed-by-okta-and-never-kept", "active": True,
    }
    ada = raw("POST", "/Users", user, status=201)
    expect("password" not in ada, "the password is never returned")
    found = lookup("ADA@acme.test")
    expect([u.id for u in found] == [ada["id"]], "userName is looked up in any case")
    bob = raw("POST", "/Users", {**user, "userName": "bob@acme.test", "externalId": "00u1bob", "name": {"givenName": "Bob"},
                                 "emails": [{"primary": True, "value": "bob@acme.test", "type": "work"}]}, status=201)
    dup = raw("POST", "/Users", user, status=409)
    expect(dup["scimType"] == "uniqueness", f"a second ada is a uniqueness error: {dup}")
    # Profile changes come as a PUT of the whole user.
    user["name"]["familyName"] = "King"
    user["id"] = ada["id"]
    put = raw("PUT", f"/Users/{ada['id']}", user)
    expect(put["name"]["familyName"] == "King", "PUT replaced the profile")
    group = raw("POST", "/Groups", {"schemas": [GROUP], "displayName": "Engineering", "members": []}, status=201)
    patch("Groups", group["id"], [{"op": "add", "path": "members", "value": [{"value": ada["id"], "display": "ada@acme.test"},
                                                                             {"value": bob["id"], "display": "bob@acme.test"}]}], status=204)
    patch("Groups", group["id"], [{"op": "remove", "path": f'members[value eq "{bob["id"]}"]'}], status=204)
    # Okta repeats the group's id in a rename.
    patch("Groups", group["id"], [{"op": "replace", "value": {"id": group["id"], "displayName": "Engineering"}}], status=204)
    members = [m["value"] for m in raw("GET", f"/Groups/{group['id']}").get("members", [])]
    expect(members == [ada["id"]], f"members after the batches: {members}")
    sales = raw("POST", "/Groups", {"schemas": [GROUP], "displayName": "Sales", "members": [{"value": bob["id"]}]}, status=201)
    raw("DELETE", f"/Groups/{sales['id']}", status=204)
    raw("GET", f"/Groups/{sales['id']}", status=404)
    # Deactivation.
    off = patch("Users", bob["id"], [{"op": "replace", "value": {"active": False}}])
    expect(off["active"] is False, "bob is deactivated")
    return {"ada": ada["id"], "bob": bob["id"], "engineering": group["id"]}


def entra():
    expect(lookup("grace@acme.test") == [], "a user not yet pushed is not found")
    grace = raw("POST", "/Users", {
        "schemas": [USER, ENTERPRISE], "externalId": "grace", "userName": "grace@acme.test", "active": True,
        "displayName": "Grace Hopper", "emails": [{"primary": True, "type": "work", "value": "grace@acme.test"}],
        "meta": {"resourceType": "User"}, "name": {"formatted": "Grace Hopper", "familyName": "Hopper", "givenName": "Grace"},
        "roles": [], ENTERPRISE: {"department": "Navy", "employeeNumber": "1906"},
    }, status=201)
    alan = raw("POST", "/Users", {"schemas": [USER], "externalId": "alan", "userName": "alan@acme.test", "active": True,
                                  "emails": [{"primary": True, "type": "work", "value": "alan@acme.test"}]}, status=201)
    patch("Users", grace["id"], [
        {"op": "Replace", "path": "displayName", "value": "Grace B. Hopper"},
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "grace.hopper@acme.test"},
        {"op": "Replace", "value": {"name.givenName": "Grace B.", f"{ENTERPRISE}:department": "Computing"}},
        {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": alan["id"]},
    ])
    got = raw("GET", f"/Users/{grace['id']}")
    expect(got["emails"][0]["value"] == "grace.hopper@acme.test", f"work email replaced: {got['emails']}")
    expect(got[ENTERPRISE] == {"department": "Computing", "employeeNumber": "1906", "manager": {"value": alan["id"]}}, f"{got[ENTERPRISE]}")
    expect(got["name"]["givenName"] == "Grace B.", "no-path replace of a sub-attribute")
    listed = raw("GET", "/Groups", params={"filter": 'displayName eq "Engineering"', "excludedAttributes": "members"})
    if listed["Resources"]:
        group = listed["Resources"][0]
        expect("members" not in group, "members are left out when excluded")
    else:
        group = raw("POST", "/Groups", {"schemas": [GROUP], "externalId": "eng-object-id", "displayName": "Engineering", "members": []},
                    status=201)
    patch("Groups", group["id"], [{"op": "Add", "path": "members", "value": [{"value": grace["id"]}, {"value": alan["id"]}]}], status=204)
    patch("Groups", group["id"], [{"op": "Remove", "path": "members", "value": [{"value": alan["id"]}]}], status=204)
    members = [m["value"] for m in raw("GET", f"/Groups/{group['id']}")["members"]]
    expect(members == [grace["id"]], f"members after Entra's add and remove: {members}")
    by_member = raw("GET", "/Groups", params={"filter": f'members[value eq "{grace["id"]}"]'})
    expect([g["id"] for g in by_member["Resources"]] == [group["id"]], "groups found by member")
    # Entra ID deactivates with the string "False".
    off = patch("Users", alan["id"], [{"op": "Replace", "path": "active", "value": "False"}])
    expect(off["active"] is False, "alan is deactivated")
    return {"grace": grace["id"], "alan": alan["id"], "engineering": group["id"]}


print(json.dumps(okta() if idp == "okta" else entra()))

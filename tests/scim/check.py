"""Runs the scim2-tester compliance checks (PyPI scim2-tester) against a SCIM base URL.

Usage: check.py <base url> <bearer token>
Prints one line per check; exits 1 if any check found an error (a MUST broken) or a
critical problem, 0 otherwise. Deviations from SHOULDs are printed, not failed.
"""

import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

base, token = sys.argv[1], sys.argv[2]
client = SyncSCIMClient(Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30))
results = check_server(client)
failed = [r for r in results if r.status in (Status.ERROR, Status.CRITICAL)]
for r in results:
    print(f"{r.status.name:<10} {r.resource_type or '-':<6} {r.title}: {r.reason or ''}")
print(f"{len(results)} checks, {len(failed)} failed")
sys.exit(1 if failed or not results else 0)

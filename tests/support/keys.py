"""API keys of the in-process test apps, by the names the services log and record."""

from __future__ import annotations

from visiondock.auth import new_key
from visiondock.settings import LOCAL_DEV_API_KEY

# The Azure backends refuse the built-in development key: apps on them get a named admin key.
AZURE_TEST_KEY, AZURE_TEST_KEY_ENTRY = new_key("azure-tests", ["admin"])
AZURE_KEY_SETTINGS: dict[str, object] = {"api_keys": [], "api_key_entries": AZURE_TEST_KEY_ENTRY}
KEY_NAMES = {LOCAL_DEV_API_KEY: "local-dev", AZURE_TEST_KEY: "azure-tests"}

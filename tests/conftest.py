"""Test-wide settings: every Ray a test starts stays on loopback."""

import os

# A single-node Ray binds to 127.0.0.1 instead of advertising the machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

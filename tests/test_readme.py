"""What the README tells a developer to run exists as it says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_browser_test_note_names_a_real_test_and_how_to_run_it():
    """Issue 23: the live view's browser test was skipped without chromium, and nothing said how to get it."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"`(tests/stream/test_stream\.py)::(test_\w+)`", readme)
    assert found, "the README names the browser test"
    source = (ROOT / found[1]).read_text()
    assert f"def {found[2]}(" in source and "CHROMIUM" in source
    for path in re.findall(r'"(/usr/bin/chromium[\w-]*)"', source):  # where the test looks for the browser
        assert path in readme, path
    assert "apt-get install chromium" in readme and f"pytest {found[1]} -k live_view" in readme
    assert "live_view" in found[2]

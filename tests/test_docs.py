"""The README documents every setting, and its examples work."""

from __future__ import annotations

import re
import subprocess
import sys

from bidder.openrtb import decode_bid_request
from bidder.settings import Settings
from tests.conftest import PROJECT_ROOT, SEED_MODEL

README = (PROJECT_ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `(BIDDER_[A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    expected = {f"BIDDER_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_readme_bid_request_example_is_valid() -> None:
    match = re.search(r"-d '(\{.*?\})'", README, flags=re.DOTALL)
    assert match is not None
    request = decode_bid_request(match.group(1).encode())
    assert request.imp is not None
    assert request.imp[0].banner is not None


def test_readme_score_example_prints_what_it_says() -> None:
    match = re.search(r"`echo (\S+) \| bidder score --model \S+`\nprints `(\S+)`", README)
    assert match is not None
    row, expected = match.groups()
    result = subprocess.run(
        [sys.executable, "-m", "bidder", "score", "--model", str(SEED_MODEL)],
        input=row + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == expected

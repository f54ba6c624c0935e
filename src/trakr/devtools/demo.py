"""The embedded default config: sample cameras reading the real clip (fetched on first use).

Example:
    >>> raw = default_config_raw()
    >>> len(raw["cameras"]), raw["cameras"][0]["Address"].endswith("vtest.avi")
    (4, True)
"""

from __future__ import annotations

import json
from importlib import resources


def default_config_raw() -> dict:
    """The embedded default config as a JSON object, with the sample clip's local path filled in."""
    from trakr.devtools.media import sample_clip_path

    text = resources.files("trakr").joinpath("default_config.json").read_text()
    text = text.replace('"{sample_clip}"', json.dumps(str(sample_clip_path())))
    return json.loads(text)

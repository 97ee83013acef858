"""The pages in a real browser (headless Chromium, no automation framework): what a person would
notice, measured in the rendered page and checked on a screenshot.

:func:`page_facts` opens a copy of the page (beside it, so that its relative links resolve) with a
script that, once every image has loaded or failed, writes its measurements into the DOM as JSON;
``chromium --dump-dom`` prints that DOM. :func:`screenshot` renders the page to a PNG.

Without Chromium the tests that need it skip, unless ``P2PTOOLS_REQUIRE_BROWSER=1`` (set by
``.ci/run``, which installs Debian's ``chromium``): then they fail, so CI never skips them silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars")  # fmt: skip
REQUIRE_ENV = "P2PTOOLS_REQUIRE_BROWSER"

#: Runs in the page: every element wider than the viewport that is not inside a scroll container
#: (an ancestor with overflow-x auto/scroll/hidden), every image that did not load, the page width.
MEASURE = """
<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  const clipped = el => { for (let p = el.parentElement; p; p = p.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true; } return false; };
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if ((r.right > vw + 1 || r.left < -1) && !clipped(el)) {
      wide.push({tag: el.tagName.toLowerCase(), cls: el.className || '', width: Math.round(r.width),
                 text: (el.textContent || '').trim().slice(0, 60)});
    }
  }
  const images = [...document.images].map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth,
                                                  shown: Math.round(i.getBoundingClientRect().width)}));
  const out = document.createElement('pre');
  out.id = 'p2ptools-page-facts';
  out.textContent = JSON.stringify({viewport: vw, page_width: document.documentElement.scrollWidth, wide: wide, images: images});
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    """The browser's path; skips the test when there is none (fails under ``P2PTOOLS_REQUIRE_BROWSER=1``)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"chromium is not installed but {REQUIRE_ENV}=1 (CI installs it in .ci/run)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return found


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="p2ptools-chromium-") as profile:  # a new empty profile each time
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout, check=True)


def page_facts(page: Path, width: int = 1000, height: int = 900) -> dict:
    """Measurements of ``page`` rendered ``width`` CSS pixels wide: ``viewport``, ``page_width``,
    ``wide`` (elements past the viewport outside scroll containers) and ``images`` (``src``,
    ``natural`` width, ``shown`` width)."""
    page = Path(page)
    text = page.read_text(encoding="utf-8")
    probe = page.with_name(f".pagecheck-{page.name}")
    probe.write_text(text.replace("</body>", MEASURE + "</body>") if "</body>" in text else text + MEASURE, encoding="utf-8")
    try:
        dom = _run([f"--window-size={width},{height}", "--virtual-time-budget=10000", "--run-all-compositor-stages-before-draw",
                    "--dump-dom", probe.as_uri()]).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="p2ptools-page-facts">(.*?)</pre>', dom, re.S)
    assert found, f"{page.name}: the measuring script did not run in Chromium"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def screenshot(page: Path, out: Path, width: int = 1000, height: int = 1400) -> np.ndarray:
    """``page`` rendered to ``out`` (PNG, ``width`` x ``height``); returns it as RGB uint8."""
    _run([f"--window-size={width},{height}", "--virtual-time-budget=10000", "--run-all-compositor-stages-before-draw",
          f"--screenshot={out}", Path(page).as_uri()])
    return np.asarray(Image.open(out).convert("RGB"))


def assert_reads_well(page: Path, shot: Path, width: int = 1000, min_images: int = 1) -> dict:
    """What a person would notice on ``page`` at ``width`` pixels: nothing but scroll containers
    wider than the window, every image loaded and shown, and a screenshot with content (not a blank
    or a one-colour page). Returns the facts."""
    facts = page_facts(page, width)
    assert facts["viewport"] <= width
    assert facts["wide"] == [], f"{page.name}: wider than the {facts['viewport']}-px window: {facts['wide'][:5]}"
    assert facts["page_width"] <= facts["viewport"], f"{page.name}: the page scrolls sideways ({facts['page_width']} px)"
    broken = [i["src"] for i in facts["images"] if i["natural"] == 0]
    assert broken == [], f"{page.name}: images that did not load: {broken}"
    assert len(facts["images"]) >= min_images and all(i["shown"] > 0 for i in facts["images"])
    image = screenshot(page, shot, width)
    assert image.shape[:2] == (1400, width)
    ink = (image.astype(int).sum(axis=2) < 600).mean()  # share of pixels that are not near-white
    assert image.std() > 10 and ink > 0.01, f"{page.name}: the screenshot looks blank (std {image.std():.1f}, ink {ink:.3f})"
    return facts

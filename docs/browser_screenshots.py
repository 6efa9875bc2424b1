"""Screenshots of a latent browser for the README (docs/browser_table.png, docs/browser_latent.png).

    python docs/browser_screenshots.py results/smollm2-135m/kjv-pydoc/layers.2.mlp/topk-256/browser [LATENT]

Opens the folder's index.html in Debian's Chromium through playwright, sorts seed 0's latents by detection
score (the explained ones first), then opens one latent (default: the first one autointerp explained).
"""
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
folder = Path(sys.argv[1]).resolve()
out = Path(__file__).resolve().parent
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
    page = browser.new_page(viewport={"width": 1200, "height": 820}, device_scale_factor=1)
    page.goto((folder / "index.html").as_uri())
    page.wait_for_selector("#latents-body tr")
    page.click("th[data-key=score]")
    page.screenshot(path=str(out / "browser_table.png"))
    latent = sys.argv[2] if len(sys.argv) > 2 else page.get_attribute("#latents-body tr", "data-latent")
    page.goto((folder / "index.html").as_uri() + f"#seed0/latent{latent}")
    page.wait_for_selector(f'#latent-title:text-is("Seed 0 · latent {latent}")')
    page.screenshot(path=str(out / "browser_latent.png"))
    browser.close()
print(f"wrote {out / 'browser_table.png'} and {out / 'browser_latent.png'} (latent {latent})")

#!/usr/bin/env python3
"""The README's Netron picture of an exported network (docs/figures/netron-alexnet.png).

    netc train models/alexnet.net --steps 1 --batch 2 --device cpu --out /tmp/alex
    netc export models/alexnet.net --weights /tmp/alex/checkpoint.safetensors -o /tmp/alexnet.onnx
    pip install netron playwright          # and Debian's chromium
    netron /tmp/alexnet.onnx --port 8089 --host 127.0.0.1 &
    python3 benches/netron_screenshot.py docs/figures/netron-alexnet.png

Opens Netron's page in headless Chromium, accepts its cookie notice, waits for the graph and
saves the graph's bounding box (shapes on every edge come from the file's value_info)."""
import asyncio
import sys

from playwright.async_api import async_playwright


async def main(out, url="http://127.0.0.1:8089/"):
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium",
                                          args=["--no-sandbox", "--disable-gpu"])
        page = await browser.new_page(viewport={"width": 900, "height": 2400})
        await page.goto(url, wait_until="networkidle", timeout=120000)
        accept = page.get_by_text("Accept", exact=True)
        if await accept.count():
            await accept.first.click()
        await page.wait_for_selector("#canvas g", timeout=120000)
        await page.wait_for_timeout(5000)
        # Netron disables window.eval, so the box comes from Playwright, not from a script.
        r = await page.locator("#canvas g").first.bounding_box()
        box = {"x": r["x"] - 20, "y": r["y"] - 20, "width": r["width"] + 40,
               "height": r["height"] + 40}
        await page.screenshot(path=out, clip=box)
        await browser.close()


asyncio.run(main(sys.argv[1]))

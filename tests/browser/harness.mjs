// What the browser tests share: their environment, `ok:` checks, and
// Debian's Chromium opened on a throwaway profile that trusts the test
// server's own CA (it does not hold it), logging the page's console errors.
import fs from "node:fs";
import { chromium } from "playwright-core";

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
export const url = env("PORTAL_URL");
export const artifacts = env("ARTIFACTS");
fs.mkdirSync(artifacts, { recursive: true });

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function check(condition, what) {
  if (!condition) throw new Error(`FAIL: ${what}`);
  console.log(`ok: ${what}`);
}

export async function openPage(viewport, timezoneId = undefined) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
    args: ["--no-sandbox"],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport, timezoneId });
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") console.log(`console: ${message.text()}`);
  });
  return { browser, page };
}

// What the tab shows of the desktop: the canvas's spread of colours, and
// whether a uniform strip at the top (XFCE's panel) differs from below.
export function looks() {
  const element = window.daasViewer && window.daasViewer.element;
  const canvas = element && (element.shadowRoot?.querySelector("canvas") ?? element.querySelector("canvas"));
  if (!canvas || !canvas.width) return null;
  const context = canvas.getContext("2d");
  const region = (x, y, w, h) => {
    const data = context.getImageData(x, y, w, h).data;
    const counts = new Map();
    let n = 0, sum = 0, sum2 = 0;
    for (let i = 0; i < data.length; i += 4) {
      const grey = (data[i] + data[i + 1] + data[i + 2]) / 3;
      const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(key, (counts.get(key) || 0) + 1);
      n++; sum += grey; sum2 += grey * grey;
    }
    const mean = sum / n;
    return { mean, sd: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), dominant: Math.max(...counts.values()) / n };
  };
  const whole = region(0, 0, canvas.width, canvas.height);
  const panel = region(0, 2, canvas.width, 18);
  const below = region(0, 150, Math.min(300, canvas.width), 100);
  const desktop = whole.sd > 8 && whole.dominant < 0.97 && panel.dominant > 0.5 &&
    Math.abs(panel.mean - below.mean) > 10;
  return { width: canvas.width, height: canvas.height, whole, panel, below, desktop };
}

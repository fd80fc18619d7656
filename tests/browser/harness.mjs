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

// A recorded session replayed for an auditor (tests/e2e/run.sh, step 3e):
// carol, an administrator, signs in to the portal, finds the recording of
// alice's desktop (the template's record = true) in the Recordings table,
// and replays it in the page's own RDP client: the XFCE desktop alice saw
// shows (not one colour, the panel at the top) and the page says it is a
// replay. The server plays the desktop's part: nothing reaches the desktop.
//
// Environment: PORTAL_URL, ADMIN_USER, ADMIN_PASSWORD, OWNER (whose
// desktop was recorded), ARTIFACTS, CHROMIUM. Prints `ok: ...` lines and,
// last, one JSON line of timings.
import path from "node:path";
import { artifacts, check, env, looks, openPage, sleep, url } from "./harness.mjs";

const admin = env("ADMIN_USER");
const password = env("ADMIN_PASSWORD");
const owner = env("OWNER");

const { browser, page } = await openPage({ width: 1366, height: 800 });
const timings = {};
try {
  await page.goto(url);
  await page.getByLabel("User name").fill(admin);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  const row = page.locator("#recordings tbody tr").filter({ hasText: owner }).first();
  await row.waitFor({ timeout: 30_000 });
  const cells = await row.locator("td").allTextContents();
  check(cells[1] === owner && !/being recorded/.test(cells[4]), `a recording of ${owner}'s desktop is listed: ${cells.join(" | ")}`);
  const clicked = Date.now();
  await row.getByRole("button", { name: /Replay/ }).click();
  let twice = 0;
  let seen = null;
  for (const end = Date.now() + 120_000; Date.now() < end && twice < 2; await sleep(1000)) {
    seen = await page.evaluate(looks);
    twice = seen && seen.desktop ? twice + 1 : 0;
  }
  timings.click_to_replayed_desktop_ms = Date.now() - clicked;
  await page.screenshot({ path: path.join(artifacts, "browser-replay.png") });
  check(twice >= 2, `the desktop ${owner} saw is replayed after ${timings.click_to_replayed_desktop_ms} ms (${JSON.stringify(seen)})`);
  const status = await page.evaluate(() => document.getElementById("viewer-status").textContent);
  check(/^Replay/.test(status), `the page says it is a replay: "${status}"`);
  await page.getByRole("button", { name: "Back to my desktops" }).click();
  console.log(JSON.stringify(timings));
} catch (error) {
  await page.screenshot({ path: path.join(artifacts, "browser-replay-failure.png") }).catch(() => {});
  console.error(String(error.stack || error));
  process.exitCode = 1;
} finally {
  await browser.close();
}

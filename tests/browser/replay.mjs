// Shadowing and replay for an auditor (tests/e2e/run.sh, step 3e), on a
// template with shadow = true and record = true. Two browsers: alice opens
// her desktop in her tab; carol, an administrator, finds it open in the
// Recordings table and watches it live: the XFCE desktop alice sees shows
// in carol's tab (read-only), and alice's tab says carol is watching. Alice
// closes her tab: carol's watch ends. Carol then replays a recording of
// alice's desktop: the desktop alice saw shows, and the page says it is a
// replay. The server plays the desktop's part: nothing reaches the desktop.
//
// Environment: PORTAL_URL, OWNER and OWNER_PASSWORD (her sign-in logs her in
// to xrdp: web.pass_through_credentials), ADMIN_USER, ADMIN_PASSWORD,
// ARTIFACTS, CHROMIUM. Prints `ok: ...` lines and, last, one JSON line of
// timings.
import path from "node:path";
import { artifacts, check, env, looks, openPage, sleep, url } from "./harness.mjs";

const owner = env("OWNER");
const ownerPassword = env("OWNER_PASSWORD");
const admin = env("ADMIN_USER");
const adminPassword = env("ADMIN_PASSWORD");

// Waits up to `ms` for the page's canvas to show the desktop twice in a row.
async function desktopShown(page, ms) {
  let twice = 0;
  let seen = null;
  for (const end = Date.now() + ms; Date.now() < end && twice < 2; await sleep(1000)) {
    seen = await page.evaluate(looks);
    twice = seen && seen.desktop ? twice + 1 : 0;
  }
  return { shown: twice >= 2, seen };
}

async function signIn(page, user, password) {
  await page.goto(url);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const status = (page) => page.evaluate(() => document.getElementById("viewer-status").textContent);

const user = await openPage({ width: 1366, height: 800 });
const auditor = await openPage({ width: 1366, height: 800 });
const timings = {};
try {
  // Alice's desktop in her tab.
  await signIn(user.page, owner, ownerPassword);
  const mine = user.page.locator("#sessions tbody tr").filter({ hasText: "READY" }).first();
  await mine.getByRole("button", { name: /Open in the browser/ }).click();
  check((await desktopShown(user.page, 120_000)).shown, `${owner}'s desktop is in her tab`);

  // Carol watches it live.
  await signIn(auditor.page, admin, adminPassword);
  const openRow = auditor.page.locator("#recordings tbody tr")
    .filter({ hasText: owner }).filter({ hasText: "open now" }).first();
  await openRow.waitFor({ timeout: 30_000 });
  const clicked = Date.now();
  await openRow.getByRole("button", { name: /Watch live/ }).click();
  const live = await desktopShown(auditor.page, 120_000);
  timings.click_to_watched_desktop_ms = Date.now() - clicked;
  await auditor.page.screenshot({ path: path.join(artifacts, "browser-watch.png") });
  check(live.shown, `${admin} watches ${owner}'s desktop live after ${timings.click_to_watched_desktop_ms} ms (${JSON.stringify(live.seen)})`);
  check(/^Watching live/.test(await status(auditor.page)), `the page says it is a live watch: "${await status(auditor.page)}"`);
  const told = user.page.locator("#viewer-watched");
  await told.waitFor({ state: "visible", timeout: 15_000 });
  await user.page.screenshot({ path: path.join(artifacts, "browser-watched.png") });
  const notice = await told.textContent();
  check(notice.includes(admin), `${owner}'s tab tells her: "${notice}"`);

  // Alice closes her tab: the watch ends.
  await user.page.getByRole("button", { name: "Back to my desktops" }).click();
  let ended = "";
  for (const end = Date.now() + 20_000; Date.now() < end; await sleep(500)) {
    ended = await status(auditor.page);
    if (/^Watch ended/.test(ended)) break;
  }
  check(/^Watch ended/.test(ended), `the watch ends with her tab: "${ended}"`);
  await auditor.page.getByRole("button", { name: "Back to my desktops" }).click();

  // Carol replays a recording of it.
  await auditor.page.reload();
  const row = auditor.page.locator("#recordings tbody tr")
    .filter({ hasText: owner }).filter({ has: auditor.page.getByRole("button", { name: /^Replay/ }) }).first();
  await row.waitFor({ timeout: 30_000 });
  const cells = await row.locator("td").allTextContents();
  check(cells[1] === owner && !/open now/.test(cells[4]), `a recording of ${owner}'s desktop is listed: ${cells.join(" | ")}`);
  const replayed = Date.now();
  await row.getByRole("button", { name: /^Replay/ }).click();
  const replay = await desktopShown(auditor.page, 120_000);
  timings.click_to_replayed_desktop_ms = Date.now() - replayed;
  await auditor.page.screenshot({ path: path.join(artifacts, "browser-replay.png") });
  check(replay.shown, `the desktop ${owner} saw is replayed after ${timings.click_to_replayed_desktop_ms} ms (${JSON.stringify(replay.seen)})`);
  check(/^Replay/.test(await status(auditor.page)), `the page says it is a replay: "${await status(auditor.page)}"`);
  await auditor.page.getByRole("button", { name: "Back to my desktops" }).click();
  console.log(JSON.stringify(timings));
} catch (error) {
  await user.page.screenshot({ path: path.join(artifacts, "browser-replay-failure-user.png") }).catch(() => {});
  await auditor.page.screenshot({ path: path.join(artifacts, "browser-replay-failure.png") }).catch(() => {});
  console.error(String(error.stack || error));
  process.exitCode = 1;
} finally {
  await user.browser.close();
  await auditor.browser.close();
}

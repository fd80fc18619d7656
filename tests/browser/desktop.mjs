// A real desktop in the browser tab (tests/e2e/run.sh, step 3c): alice
// signs in to the portal, opens her READY desktop and the XFCE desktop
// shows (not one colour, the panel at the top): with PASS_THROUGH=1 (the
// server's web.pass_through_credentials) without typing anything more,
// else after she logs in to xrdp with her domain password inside the tab;
// she types a command in its run dialog; the desktop goes full screen; text
// copied in the page pastes in the desktop and back (CLIPBOARD_TOOL); the
// network drops (the test's proxy resets every connection) and the tab
// reconnects to the same session; the window gets smaller and the desktop
// follows; the ticket her page used is refused when used again.
//
// With CLIPBOARD=off (the template's policy "off"), a page changed to turn
// its clipboard on anyway copies nothing either way: the gateway drops it.
// With RECORDED=1 (the template's record = true) the page says so. With
// FIRST_LOGIN=1 (her first login on a claimed desktop) only the desktop's
// showing is checked and timed. With CREATE=TEMPLATE she first creates a
// desktop of TEMPLATE from the page (a warm pool's claim) and opens it
// CLICK_AFTER_MS after the page says it is ready (a user's reading time;
// the server starts her session meanwhile); the timings then also count
// from the create's click.
//
// Environment: PORTAL_URL, ALICE_PASSWORD, ARTIFACTS, CHROMIUM,
// PASS_THROUGH, CLIPBOARD_TOOL (a script: `get`, `set TEXT` and `session`
// on the desktop, for her X session), CLIPBOARD. Prints `ok: ...` lines and,
// last, one JSON line of timings.
import { execFile } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { artifacts, check, env, looks, openPage, sleep, url } from "./harness.mjs";

const password = env("ALICE_PASSWORD");
const passThrough = process.env.PASS_THROUGH === "1";
const clipboardOff = process.env.CLIPBOARD === "off";
const tool = process.env.CLIPBOARD_TOOL;
// Screenshots: browser-*.png, or browser-claimed-*.png for a first login.
const shots = process.env.FIRST_LOGIN === "1" ? "browser-claimed" : "browser";

// The desktop's side: her clipboard, and her X session's process. Not
// blocking: the proxy below runs in this process, and the desktop's xclip
// waits for the page's answer through it.
const onDesktop = async (...args) =>
  (await promisify(execFile)("bash", [tool, ...args], { encoding: "utf8", timeout: 30_000 })).stdout.trim();

// A TCP proxy in front of the portal, so the test can drop the network:
// `cut()` resets every connection through it (the browser sees them fail).
function proxy(target) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => { sockets.delete(s); client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    url: `${target.protocol}//${target.hostname}:${server.address().port}/`,
    cut: () => { for (const s of sockets) s.resetAndDestroy(); },
    close: () => { server.close(); for (const s of sockets) s.destroy(); },
  })));
}

// Waits up to `ms` for `probe()` to return a truthy value; returns the last.
async function until(ms, probe, every = 1000) {
  let last;
  for (const end = Date.now() + ms; Date.now() < end; await sleep(every)) {
    try { last = await probe(); } catch { last = undefined; }
    if (last) return last;
  }
  return last;
}

// The RDP client sends keys by their physical code: Shift must be held for
// capitals (the passwords and commands here need no other shifted key).
async function typeKeys(page, text) {
  for (const ch of text) {
    if (/[A-Z]/.test(ch)) {
      await page.keyboard.down("Shift");
      await page.keyboard.press(`Key${ch}`);
      await page.keyboard.up("Shift");
    } else if (ch === " ") {
      await page.keyboard.press("Space");
    } else {
      await page.keyboard.press(ch);
    }
    await sleep(30);
  }
}

const { browser, page } = await openPage({ width: 1366, height: 800 });
// The page's clipboard works without asking (a user would allow it once).
await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
const network = await proxy(new URL(url));
if (clipboardOff) {
  // A changed page: it turns the clipboard on whatever the policy says.
  await page.route("**/ticket", async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    check(body.clipboard === "off", "the ticket says the template's clipboard is off");
    await route.fulfill({ response, json: { ...body, clipboard: "both" } });
  });
}
const timings = {};
let ticket; // the first one the page used
try {
  await page.goto(network.url);
  await page.getByLabel("User name").fill("alice");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  let created = null;
  if (process.env.CREATE) {
    const answer = page.waitForResponse((r) => r.url().endsWith("/web/sessions") && r.request().method() === "POST");
    await page.getByRole("button", { name: `Create a desktop (${process.env.CREATE})` }).click();
    created = Date.now();
    timings.session_id = (await (await answer).json()).id;
    await page.getByText("Your desktop is ready.").waitFor({ timeout: 120_000 });
    timings.create_to_ready_ms = Date.now() - created;
    timings.ready_at_ms = Date.now(); // this host's clock, for the e2e
    check(true, `the page created ${timings.session_id}: ready after ${timings.create_to_ready_ms} ms`);
    timings.ready_to_click_ms = Number(process.env.CLICK_AFTER_MS || 0);
    await sleep(timings.ready_to_click_ms);
  }
  const row = page.locator("#sessions tbody tr").filter({ hasText: "READY" }).first();
  await row.waitFor();
  const ticketAnswer = page.waitForResponse((r) => r.url().endsWith("/ticket") && r.request().method() === "POST");
  const clicked = Date.now();
  await row.getByRole("button", { name: /Open in the browser/ }).click();
  ticket = (await (await ticketAnswer).json()).ticket;
  check(typeof ticket === "string" && ticket.length === 64, "the page got a single-use ticket");
  let seen = null;
  const said = new Set(); // what the page said while the tab was blank
  for (const until = Date.now() + 60_000; Date.now() < until; await sleep(250)) {
    seen = await page.evaluate(looks);
    if (seen && seen.whole.sd > 2) break;
    said.add(await page.evaluate(() => document.getElementById("viewer-status").textContent));
  }
  timings.click_to_first_frame_ms = Date.now() - clicked;
  if (created !== null) timings.create_to_first_frame_ms = Date.now() - created;
  check(seen !== null && seen.whole.sd > 2, `xrdp's screen is in the tab after ${timings.click_to_first_frame_ms} ms`);
  // (A session started at the create may show at once.)
  if (process.env.FIRST_LOGIN === "1" && created === null) {
    check([...said].some((text) => text.startsWith("Connected. Starting your session")),
      `while her session starts the page says why it waits (${JSON.stringify([...said])})`);
  }
  await page.screenshot({ path: path.join(artifacts, `${shots}-login.png`) });

  // The page gave the canvas the keyboard (a click outside xrdp's login
  // box would take the focus from it).
  check(await page.evaluate(() => document.activeElement?.tagName === "IRON-REMOTE-DESKTOP"),
    "the desktop has the keyboard");
  const typed = Date.now();
  if (!passThrough) {
    // xrdp's login box has alice's name and the focus in the password field.
    await typeKeys(page, password);
    await page.keyboard.press("Enter");
  }
  // Looked at every 250 ms; the time is when it first showed, once it
  // stayed 2 s (not the login screen drawn half, not a frame in passing).
  const deadline = Date.now() + 120_000;
  let since = null;
  while (Date.now() < deadline) {
    await sleep(250);
    seen = await page.evaluate(looks);
    since = seen && seen.desktop ? since ?? Date.now() : null;
    if (since !== null && Date.now() - since >= 2000) break;
  }
  const stayed = since !== null && Date.now() - since >= 2000;
  if (!passThrough) timings.password_to_desktop_ms = (since ?? Date.now()) - typed;
  timings.click_to_desktop_ms = (since ?? Date.now()) - clicked;
  if (created !== null) timings.create_to_desktop_ms = (since ?? Date.now()) - created;
  await page.screenshot({ path: path.join(artifacts, `${shots}-desktop.png`) });
  check(stayed, `the XFCE desktop is in the tab${passThrough ? " with no second password" : ""} after ${timings.click_to_desktop_ms} ms (${JSON.stringify(seen)})`);

  if (process.env.RECORDED === "1") {
    const notice = page.locator("#viewer-recorded");
    check(await notice.isVisible(), `the page tells her the session is recorded: "${await notice.textContent()}"`);
  }
  if (clipboardOff) {
    await clipboardIsClosed();
    console.log(JSON.stringify(timings));
  } else if (process.env.FIRST_LOGIN === "1") {
    await page.getByRole("button", { name: "Back to my desktops" }).click();
    console.log(JSON.stringify(timings));
  } else {
    await theRest();
  }
} catch (error) {
  await page.screenshot({ path: path.join(artifacts, `${shots}-failure.png`) }).catch(() => {});
  console.error(String(error.stack || error));
  process.exitCode = 1;
} finally {
  await browser.close();
  network.close();
}

// Under the policy "off": nothing crosses either way, the page notwithstanding.
async function clipboardIsClosed() {
  const before = await onDesktop("get");
  const fromPage = `page-text-under-off-${process.pid}`;
  await page.evaluate((text) => navigator.clipboard.writeText(text), fromPage);
  await sleep(10_000);
  const after = await onDesktop("get");
  check(after !== fromPage, `text copied in the page does not reach the desktop (it holds "${after}", held "${before}")`);
  const fromDesktop = `desktop-text-under-off-${process.pid}`;
  await onDesktop("set", fromDesktop);
  await sleep(10_000);
  const pasted = await page.evaluate(() => navigator.clipboard.readText());
  check(pasted !== fromDesktop, `text copied in the desktop does not reach the page (it holds "${pasted}")`);
  // Still connected: the gateway read the stream all along (what it cannot
  // read ends the connection), it did not just stop it.
  const status = await page.evaluate(() => document.getElementById("viewer-status").textContent);
  check(/^Connected/.test(status) && (await page.evaluate(looks)).desktop, `still connected: "${status}"`);
}

async function theRest() {
  // Type into it: a command in XFCE's run dialog (Alt+F2), given time to
  // settle before Enter (it completes names as they are typed).
  await page.keyboard.press("Alt+F2");
  await sleep(5000);
  timings.typed_at = new Date().toISOString();
  await typeKeys(page, "touch typed-in-the-browser");
  await sleep(2000);
  await page.screenshot({ path: path.join(artifacts, `${shots}-typed.png`) });
  await page.keyboard.down("Enter");
  await sleep(150);
  await page.keyboard.up("Enter");
  await sleep(3000);
  check(true, "typed a command into the desktop's run dialog");

  // Full screen from the bar: the desktop alone, scaled to fit.
  await page.getByRole("button", { name: "Full screen" }).click();
  await sleep(500);
  check(await page.evaluate(() => document.fullscreenElement?.id === "screen"), "the desktop is full screen");
  await page.evaluate(() => document.exitFullscreen());

  // Copy and paste, both ways (the template's policy: both).
  const fromPage = `copied-in-the-page-${process.pid}`;
  await page.evaluate((text) => navigator.clipboard.writeText(text), fromPage);
  const pastedThere = await until(30_000, async () => (await onDesktop("get")) === fromPage);
  check(pastedThere, `text copied in the page pastes in the desktop (it holds "${await onDesktop("get")}")`);
  const fromDesktop = `copied-in-the-desktop-${process.pid}`;
  const copied = Date.now();
  await onDesktop("set", fromDesktop);
  const pastedHere = await until(30_000,
    async () => (await page.evaluate(() => navigator.clipboard.readText())) === fromDesktop, 250);
  timings.desktop_copy_to_page_ms = Date.now() - copied;
  check(pastedHere, "text copied in the desktop pastes in the page");

  // The network drops: the tab reconnects to the same session, no login.
  const session = await onDesktop("session");
  const ticketAgain = page.waitForResponse((r) => r.url().endsWith("/ticket") && r.request().method() === "POST");
  const dropped = Date.now();
  network.cut();
  const reconnecting = await until(15_000,
    () => page.evaluate(() => /Reconnecting/.test(document.getElementById("viewer-status").textContent)), 100);
  check(reconnecting, "the page says it is reconnecting");
  await ticketAgain;
  let back = 0;
  const reconnected = await until(60_000, async () => {
    const seen = await page.evaluate(looks);
    back = seen && seen.desktop ? back + 1 : 0;
    return back >= 2;
  });
  timings.drop_to_desktop_ms = Date.now() - dropped;
  await page.screenshot({ path: path.join(artifacts, `${shots}-reconnected.png`) });
  check(reconnected, `the desktop is back in the tab ${timings.drop_to_desktop_ms} ms after the drop`);
  check((await onDesktop("session")) === session, `the same X session (${session})`);

  // A smaller window: the page reopens the desktop at the new size (sign in
  // once: nothing asked) and xrdp resizes the same session.
  const opened = await page.evaluate(() => ({ width: window.daasViewer.width, height: window.daasViewer.height }));
  const resized = Date.now();
  await page.setViewportSize({ width: 1100, height: 760 });
  const wanted = await page.evaluate(async () => (await import("/viewer.js")).sizeFor(document.getElementById("screen")));
  check(wanted.width < opened.width, `the tab asks for ${wanted.width}x${wanted.height} (opened at ${opened.width}x${opened.height})`);
  back = 0;
  const followed = await until(60_000, async () => {
    const seen = await page.evaluate(looks);
    back = seen && seen.desktop && seen.width === wanted.width && seen.height === wanted.height ? back + 1 : 0;
    return back >= 2;
  });
  timings.resize_to_desktop_ms = Date.now() - resized;
  await page.screenshot({ path: path.join(artifacts, `${shots}-resized.png`) });
  check(followed, `the desktop follows the tab: ${wanted.width}x${wanted.height} after ${timings.resize_to_desktop_ms} ms (${JSON.stringify(await page.evaluate(looks))})`);
  check((await onDesktop("session")) === session, "still the same X session");

  // The used ticket again, as a thief would: the gateway refuses it.
  const stolen = await page.evaluate(async (used) => {
    const viewer = await import("/viewer.js");
    const div = document.createElement("div");
    div.style.cssText = "width:800px;height:600px;position:fixed;left:-2000px";
    document.body.append(div);
    try {
      await viewer.open(div, {
        gateway: `wss://${location.host}/web/gateway`, ticket: used, username: "alice",
        status: () => {},
      });
      return "connected";
    } catch (error) {
      return String(error.message || error);
    }
  }, ticket);
  check(/refused the ticket/.test(stolen), `the used ticket is refused: ${stolen}`);
  await page.getByRole("button", { name: "Back to my desktops" }).click();
  console.log(JSON.stringify(timings));
}

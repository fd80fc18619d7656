// A real desktop in the browser tab (tests/e2e/run.sh, step 3c): alice
// signs in to the portal, opens her READY desktop and the XFCE desktop
// shows (not one colour, the panel at the top): with PASS_THROUGH=1 (the
// server's web.pass_through_credentials) without typing anything more,
// else after she logs in to xrdp with her domain password inside the tab;
// she types a command in its run dialog; the desktop goes full screen; the
// ticket her page used is refused when used again.
//
// Environment: PORTAL_URL, ALICE_PASSWORD, ARTIFACTS, CHROMIUM,
// PASS_THROUGH. Prints `ok: ...` lines and, last, one JSON line of timings.
import path from "node:path";
import { artifacts, check, env, openPage, sleep, url } from "./harness.mjs";

const password = env("ALICE_PASSWORD");
const passThrough = process.env.PASS_THROUGH === "1";

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

// What the tab shows of the desktop: the canvas's spread of colours, and
// whether a uniform strip at the top (XFCE's panel) differs from below.
function looks() {
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

const { browser, page } = await openPage({ width: 1366, height: 800 });
const timings = {};
try {
  await page.goto(url);
  await page.getByLabel("User name").fill("alice");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  const row = page.locator("#sessions tbody tr").filter({ hasText: "READY" }).first();
  await row.waitFor();
  const ticketAnswer = page.waitForResponse((r) => r.url().endsWith("/ticket") && r.request().method() === "POST");
  const clicked = Date.now();
  await row.getByRole("button", { name: /Open in the browser/ }).click();
  const ticket = (await (await ticketAnswer).json()).ticket;
  check(typeof ticket === "string" && ticket.length === 64, "the page got a single-use ticket");
  let seen = null;
  for (const until = Date.now() + 60_000; Date.now() < until; await sleep(250)) {
    seen = await page.evaluate(looks);
    if (seen && seen.whole.sd > 2) break;
  }
  timings.click_to_first_frame_ms = Date.now() - clicked;
  check(seen !== null && seen.whole.sd > 2, `xrdp's screen is in the tab after ${timings.click_to_first_frame_ms} ms`);
  await page.screenshot({ path: path.join(artifacts, "browser-login.png") });

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
  const deadline = Date.now() + 120_000;
  let twice = 0;
  while (Date.now() < deadline) {
    await sleep(2000);
    seen = await page.evaluate(looks);
    twice = seen && seen.desktop ? twice + 1 : 0;
    if (twice >= 2) break;
  }
  if (!passThrough) timings.password_to_desktop_ms = Date.now() - typed;
  timings.click_to_desktop_ms = Date.now() - clicked;
  await page.screenshot({ path: path.join(artifacts, "browser-desktop.png") });
  check(twice >= 2, `the XFCE desktop is in the tab${passThrough ? " with no second password" : ""} (${JSON.stringify(seen)})`);

  // Type into it: a command in XFCE's run dialog (Alt+F2), given time to
  // settle before Enter (it completes names as they are typed).
  await page.keyboard.press("Alt+F2");
  await sleep(5000);
  timings.typed_at = new Date().toISOString();
  await typeKeys(page, "touch typed-in-the-browser");
  await sleep(2000);
  await page.screenshot({ path: path.join(artifacts, "browser-typed.png") });
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
} catch (error) {
  await page.screenshot({ path: path.join(artifacts, "browser-failure.png") }).catch(() => {});
  console.error(String(error.stack || error));
  process.exitCode = 1;
} finally {
  await browser.close();
}

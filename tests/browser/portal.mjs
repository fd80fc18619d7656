// The web portal in a real browser (Debian's Chromium, driven by
// playwright-core), as people use it: bob is refused, alice signs in with
// the keyboard, creates a desktop and watches its stages arrive in order,
// picks a size on the catalog's card, finds it READY with a .rdp link,
// destroys it, adds a schedule (in the browser's time zone) and removes it,
// and signs out; dave sees his group's template too, and his organisation's
// quota refuses a second desktop with its reason; alice, who administers
// his organisation, destroys his desktop (which keeps its disk); carol, an
// administrator, finds the cluster's nodes, drains one and resumes it; dave
// resumes his desktop from its kept disk. Run
// by server/tests/it/browser.rs against a real server (two simulated nodes)
// and the test domain.
//
// Environment: PORTAL_URL, ALICE_PASSWORD, BOB_PASSWORD, CAROL_PASSWORD,
// DAVE_PASSWORD, ARTIFACTS (where screenshots go), CHROMIUM (/usr/lib/chromium/chromium).
import fs from "node:fs";
import path from "node:path";
import { artifacts, check, env, openPage, url } from "./harness.mjs";

// A browser in Paris: a schedule takes the browser's time zone.
const { browser, page } = await openPage({ width: 1366, height: 768 }, "Europe/Paris");
const failures = [];
page.on("pageerror", (error) => failures.push(`page error: ${error}`));
const external = [];
page.on("request", (request) => {
  if (!request.url().startsWith(url) && !request.url().startsWith("data:")) {
    external.push(request.url());
  }
});

try {
  await page.goto(url);
  const user = page.getByLabel("User name");
  const password = page.getByLabel("Password");
  await user.waitFor();
  check(await user.isVisible(), "the sign-in form is shown, with labelled fields");

  // bob has the right password but is not in daas-users.
  await user.fill("bob");
  await password.fill(env("BOB_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  const refusal = page.locator("#signin-error");
  await refusal.filter({ hasText: "daas-users" }).waitFor();
  check(true, `bob is refused: "${await refusal.textContent()}"`);

  // alice, with the keyboard only: Tab between the fields, Enter submits.
  await user.fill("");
  await user.focus();
  await page.keyboard.type("alice");
  await page.keyboard.press("Tab");
  await page.keyboard.type(env("ALICE_PASSWORD"));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "My desktops" }).waitFor();
  check(await page.getByText("alice", { exact: true }).isVisible(), "alice is signed in");
  check(await page.getByText("You have no desktop").isVisible(), "she has no desktop yet");

  // The catalog: her card (not the developers' template), with its sizes.
  const cards = page.locator("#templates article");
  check((await cards.count()) === 1
    && await cards.first().getByRole("heading", { name: "Debian 12 with XFCE" }).isVisible(),
    "alice sees the one template that is for her, as a card");
  const size = cards.first().getByLabel("Size");
  check(await size.inputValue() === "medium", "its default size is chosen");
  await size.selectOption("small");

  // Create: the stages appear, in order, as they happen.
  const create = page.getByRole("button", { name: /^Create a desktop/ });
  const clicked = Date.now();
  await create.first().click();
  await page.getByText("Your desktop is ready.").waitFor({ timeout: 120_000 });
  const readyMs = Date.now() - clicked;
  const stages = await page.locator("#stages li").evaluateAll((items) =>
    items.map((li) => li.dataset.state));
  check(
    JSON.stringify(stages) ===
      JSON.stringify(["QUEUED", "PROVISIONING", "BOOTING", "CONFIGURING", "READY"]),
    `the stages arrived in order: ${stages.join(" -> ")} (${readyMs} ms to READY)`,
  );
  const row = page.locator("#sessions tbody tr");
  await row.filter({ hasText: "READY" }).first().waitFor();
  check((await row.count()) === 1, "the desktop is listed once");
  check(await row.getByText("debian-12-xfce (small)").isVisible(), "in the size she chose");
  check(
    await row.getByRole("link", { name: /Download \.rdp/ }).isVisible(),
    "a READY desktop offers a .rdp file",
  );
  await page.screenshot({ path: path.join(artifacts, "portal.png"), fullPage: true });

  // Destroy, confirming the dialog.
  page.once("dialog", (dialog) => dialog.accept());
  await row.getByRole("button", { name: /^Destroy/ }).click();
  await page.getByText("You have no desktop").waitFor({ timeout: 60_000 });
  check(true, "the destroyed desktop leaves the list");

  // A schedule: her desktop ready at 07:30 on weekdays, in her browser's
  // time zone; then removed.
  await page.getByLabel("Ready at").fill("07:30");
  await page.getByLabel("On", { exact: true }).selectOption("mon-fri");
  const zone = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
  await page.getByRole("button", { name: "Add the schedule" }).click();
  const scheduleRow = page.locator("#schedules tbody tr").filter({ hasText: "07:30 mon-fri" });
  await scheduleRow.waitFor();
  check(zone === "Europe/Paris" && await scheduleRow.getByText(`07:30 mon-fri (${zone})`).isVisible()
    && await scheduleRow.getByText("not yet").isVisible(),
    `a schedule is added in her time zone (${zone}), with its next time`);
  await page.screenshot({ path: path.join(artifacts, "portal-schedule.png"), fullPage: true });
  await scheduleRow.getByRole("button", { name: /^Remove/ }).click();
  await scheduleRow.waitFor({ state: "detached" });
  check(true, "and removed");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("User name").waitFor();
  check(true, "signed out: the sign-in form is back");
  // dave, in the group daas-developers: their template as well.
  await page.getByLabel("User name").fill("dave");
  await page.getByLabel("Password").fill(env("DAVE_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "My desktops" }).waitFor();
  const daves = page.locator("#templates article");
  await daves.getByRole("heading", { name: "Developer workstation" }).waitFor();
  check((await daves.count()) === 2, "dave, in daas-developers, sees the developers' template too");
  // His organisation (developers: daas-developers) has room for one desktop.
  const quotas = page.locator("#quotas li");
  await quotas.filter({ hasText: "Developers: 0 of 1 desktops" }).waitFor();
  check(true, `his quota is shown: "${await quotas.first().textContent()}"`);
  const devCard = daves.filter({ has: page.getByRole("heading", { name: "Developer workstation" }) });
  await devCard.getByRole("button", { name: /^Create a desktop/ }).click();
  await page.getByText("Your desktop is ready.").waitFor({ timeout: 120_000 });
  await quotas.filter({ hasText: "Developers: 1 of 1 desktops" }).waitFor();
  await devCard.getByRole("button", { name: /^Create a desktop/ }).click();
  const full = page.locator("#notice");
  await full.filter({ hasText: "at its quota" }).waitFor();
  const said = await full.textContent();
  check(said.includes("organisation 'developers' is at its quota: 1 of 1 desktops live")
    && said.includes("orgs.developers.quota.desktops"),
    `a second desktop past the quota is refused, saying why: "${said}"`);
  await page.screenshot({ path: path.join(artifacts, "portal-quota.png"), fullPage: true });
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("User name").waitFor();

  // alice, in daas-team-leads, administers dave's organisation: she sees
  // his desktop and destroys it.
  await page.getByLabel("User name").fill("alice");
  await page.getByLabel("Password").fill(env("ALICE_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  const theirs = page.getByRole("table", { name: "My organisations' desktops" });
  const daveRow = theirs.locator("tbody tr").filter({ hasText: "dave" });
  await daveRow.waitFor();
  check(await daveRow.getByText("dev (large)").isVisible(),
    "alice, administering the developers, sees dave's desktop");
  page.once("dialog", (dialog) => dialog.accept());
  await daveRow.getByRole("button", { name: /^Destroy/ }).click();
  await daveRow.waitFor({ state: "detached", timeout: 60_000 });
  check(true, "and destroys it");
  check(!(await page.getByRole("table", { name: "Cluster nodes" }).isVisible()),
    "she is no administrator of the server: no admin view");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("User name").waitFor();

  // carol, an administrator: the cluster's nodes, drain and resume.
  await page.getByLabel("User name").fill("carol");
  await page.getByLabel("Password").fill(env("CAROL_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  const nodes = page.getByRole("table", { name: "Cluster nodes" });
  await nodes.waitFor();
  check(!(await page.getByText("Preparing your desktop").isVisible())
    && !(await page.getByText(/desktop-[a-z0-9]{6}/).first().isVisible()),
    "nothing of alice's desktop is left on the page for carol");
  const node = (name) => nodes.locator("tbody tr").filter({
    has: page.getByRole("cell", { name, exact: true }) });
  await node("node-2").waitFor();
  check((await nodes.locator("tbody tr").count()) === 2, "carol sees the two nodes");
  check(await node("node-1").getByText("debian-12-xfce @ ceph").isVisible(),
    "each node shows its template and the storage its clones start from");
  await node("node-2").getByRole("button", { name: "Drain" }).click();
  await node("node-2").getByText("online, drained").waitFor();
  check(true, "carol drains node-2: it shows drained, with Resume");
  await page.screenshot({ path: path.join(artifacts, "portal-nodes.png"), fullPage: true });
  await node("node-2").getByRole("button", { name: "Resume" }).click();
  await node("node-2").getByRole("button", { name: "Drain" }).waitFor();
  check(!(await node("node-2").getByText("drained").isVisible()), "and resumes it");
  check(await page.locator("#templates article")
    .getByRole("heading", { name: "Developer workstation" }).isVisible(),
    "carol, an administrator, sees every template");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("User name").waitFor();

  // dave again: his developer desktop (destroyed by alice) kept its disk;
  // its card resumes it.
  await page.getByLabel("User name").fill("dave");
  await page.getByLabel("Password").fill(env("DAVE_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  const resume = page.getByRole("button", { name: /^Resume my desktop \(dev, kept / });
  await resume.waitFor();
  await resume.click();
  await page.getByText("Your desktop is ready.").waitFor({ timeout: 120_000 });
  const resumed = page.locator("#sessions tbody tr").filter({ hasText: "READY" });
  await resumed.waitFor();
  check(await resumed.getByText("dev (large), restored").isVisible(),
    "dave resumes his desktop from its kept disk");
  await page.screenshot({ path: path.join(artifacts, "portal-resume.png"), fullPage: true });
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("User name").waitFor();

  check(external.length === 0, `nothing loaded from elsewhere (${external.join(", ")})`);
  check(failures.length === 0, `no script errors (${failures.join("; ")})`);
  fs.writeFileSync(path.join(artifacts, "portal-timings.json"),
    JSON.stringify({ click_to_ready_ms: readyMs }) + "\n");
} catch (error) {
  await page.screenshot({ path: path.join(artifacts, "portal-failure.png"), fullPage: true })
    .catch(() => {});
  console.error(String(error.stack || error));
  process.exitCode = 1;
} finally {
  await browser.close();
}

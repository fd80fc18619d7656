// The desktop in the browser tab: the IronRDP web client (vendored in
// /vendor, see server/src/web/assets/vendor/VENDOR.md) connects through the
// server's RDP gateway with a single-use ticket; the server finds the
// desktop, the browser never learns its address. The web client never logs
// on by itself: with web.pass_through_credentials the gateway gives xrdp the
// sign-in's password, else xrdp asks for it in its own login box.
//
// Copy and paste follows the template's policy (the ticket's `clipboard`):
// the web client's clipboard is off for "off"; the gateway enforces every
// policy whatever the page does.
import * as rdp from "/vendor/iron-remote-desktop-rdp.js";
import "/vendor/iron-remote-desktop.js";

let started = null; // the WASM module, loaded once

// Why a session did not start, or ended without the desktop ending it:
// `started` tells whether the desktop was shown first (a dropped network),
// `refused` that the gateway refused the ticket (opening again will not help).
export class Ended extends Error {
  constructor(message, { started, refused = false }) {
    super(message);
    this.started = started;
    this.refused = refused;
  }
}

// Opens a session in `container`; resolves when the desktop ends it (with
// the reason), throws an `Ended` otherwise. With `replay` ("recording" or
// "live"), `gateway` is a recording's replay or a live watch, which plays
// the desktop's part: the client must ask for the channels the recorded one
// did (the clipboard's unless "off").
export async function open(container, { gateway, ticket, username, status, clipboard = "both", replay = "", autologon = false }) {
  await customElements.whenDefined("iron-remote-desktop");
  const element = document.createElement("iron-remote-desktop");
  element.module = rdp.Backend;
  element.setAttribute("scale", "fit");
  element.setAttribute("flexcenter", "true");
  element.setAttribute("verbose", "false");
  const ready = new Promise((resolve) =>
    element.addEventListener("ready", (event) => resolve(event.detail.irgUserInteraction)));
  container.replaceChildren(element);
  const ui = await ready;
  if (!started) started = rdp.init("WARN");
  await started;
  // Read at connect time. With the clipboard on, the tab copies both ways
  // while it has the focus (the browser asks the user once for the right
  // to read the clipboard).
  ui.setEnableClipboard(clipboard !== "off");
  const { width, height } = sizeFor(container);
  const config = ui.configBuilder()
    .withUsername(username)
    .withPassword("")
    // Required by the client; the gateway ignores it.
    .withDestination("desktop:3389")
    .withProxyAddress(gateway)
    .withAuthToken(ticket)
    .withDesktopSize({ width, height })
    // No Display Control: against xrdp 0.9.21 this client's resize leaves
    // the screen half redrawn. The page reopens the desktop at a new size
    // instead (app.js), else it keeps this one, scaled to fit.
    .build();
  status("Connecting…");
  let session;
  try {
    session = await ui.connect(config);
  } catch (error) {
    const details = error && error.rdcleanpathDetails ? error.rdcleanpathDetails() : null;
    const refused = Boolean(details && details.httpStatusCode === 403);
    throw new Ended(refused
      ? "the gateway refused the ticket: open the desktop again"
      : firstLine(error), { started: false, refused });
  }
  ui.setVisibility(true);
  // Keys go to the desktop while its canvas has the focus: give it now.
  const canvas = element.shadowRoot && element.shadowRoot.querySelector("canvas");
  if (canvas) canvas.focus();
  status({
    recording: "Replaying what the user's tab showed (nothing typed here goes anywhere).",
    live: "Watching live, read-only (nothing typed here goes anywhere).",
  }[replay] || (autologon
    // xrdp shows nothing until the session has started: say why it waits.
    ? "Connected. Starting your session…"
    : "Connected. If the desktop asks, log in with your password."));
  window.daasViewer = { ui, element, width, height };
  let ended;
  try {
    ended = await session.run();
  } catch (error) {
    throw new Ended(firstLine(error), { started: true });
  }
  const reason = ended.reason();
  status(`Disconnected: ${reason}`);
  return reason;
}

// The desktop size for `container`: its own, in the steps the client takes.
export function sizeFor(container) {
  return {
    width: Math.max(800, Math.floor(container.clientWidth / 4) * 4),
    height: Math.max(600, Math.floor(container.clientHeight / 2) * 2),
  };
}

function firstLine(error) {
  const text = error && error.backtrace ? error.backtrace() : String(error);
  return text.split("\n")[0];
}

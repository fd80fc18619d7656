// The desktop in the browser tab: the IronRDP web client (vendored in
// /vendor, see server/src/web/assets/vendor/VENDOR.md) connects through the
// server's RDP gateway with a single-use ticket; the server finds the
// desktop, the browser never learns its address. The web client never logs
// on by itself: with web.pass_through_credentials the gateway gives xrdp the
// sign-in's password, else xrdp asks for it in its own login box.
import * as rdp from "/vendor/iron-remote-desktop-rdp.js";
import "/vendor/iron-remote-desktop.js";

let started = null; // the WASM module, loaded once

// Opens a session in `container`; resolves when it ends (with the reason).
export async function open(container, { gateway, ticket, username, status }) {
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
  const width = Math.max(800, Math.floor(container.clientWidth / 4) * 4);
  const height = Math.max(600, Math.floor(container.clientHeight / 2) * 2);
  const config = ui.configBuilder()
    .withUsername(username)
    .withPassword("")
    // Required by the client; the gateway ignores it.
    .withDestination("desktop:3389")
    .withProxyAddress(gateway)
    .withAuthToken(ticket)
    .withDesktopSize({ width, height })
    // No Display Control: against xrdp 0.9.21 this client's resize leaves
    // the screen half redrawn. The desktop keeps the size it opened with,
    // scaled to fit the tab (full screen too).
    .build();
  status("Connecting…");
  let session;
  try {
    session = await ui.connect(config);
  } catch (error) {
    const details = error && error.rdcleanpathDetails ? error.rdcleanpathDetails() : null;
    const text = error && error.backtrace ? error.backtrace() : String(error);
    throw new Error(details && details.httpStatusCode === 403
      ? "the gateway refused the ticket: open the desktop again"
      : text.split("\n")[0]);
  }
  ui.setVisibility(true);
  // Keys go to the desktop while its canvas has the focus: give it now.
  const canvas = element.shadowRoot && element.shadowRoot.querySelector("canvas");
  if (canvas) canvas.focus();
  status("Connected. If the desktop asks, log in with your password.");
  window.daasViewer = { ui, element };
  const ended = await session.run();
  const reason = ended.reason();
  status(`Disconnected: ${reason}`);
  return reason;
}

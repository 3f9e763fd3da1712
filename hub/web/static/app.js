// The app's shell: sign-in, the live link, the e-stop on every page, and a hash router over the pages.
import { act, api, auth, confirmAction, connectLive, esc, onLive } from "./core.js";
import * as pages from "./pages.js";

const ROUTES = [
  [/^#\/fleet$/, pages.fleet],
  [/^#\/car\/([^/]+)$/, pages.car],
  [/^#\/sessions$/, pages.sessions],
  [/^#\/session\/([^/]+)\/([^/]+)$/, pages.session],
  [/^#\/models$/, pages.models],
  [/^#\/model\/([^/]+)\/([^/]+)$/, pages.model],
  [/^#\/deployments$/, pages.deployments],
  [/^#\/jobs$/, pages.jobs],
  [/^#\/job\/([^/]+)$/, pages.job],
];

let leave = null; // the current page's clean-up (closes its sockets, stops driving)

async function route() {
  const hash = location.hash || "#/fleet";
  if (leave) { leave(); leave = null; }
  const view = document.getElementById("view");
  view.replaceChildren();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("here", hash.startsWith(a.getAttribute("href").replace(/s$/, "")));
  for (const [pattern, page] of ROUTES) {
    const m = hash.match(pattern);
    if (!m) continue;
    try { leave = (await page(view, ...m.slice(1).map(decodeURIComponent))) || null; }
    catch (e) { view.innerHTML = `<p class="error">${esc(e.message)}</p>`; }
    return;
  }
  view.innerHTML = `<p>No page here. <a href="#/fleet">Fleet</a></p>`;
}

async function signIn(token, remember = true) {
  auth.token = token;
  try {
    auth.scope = (await api("/whoami")).scope;
  } catch (e) {
    auth.token = ""; auth.scope = "read";
    if (token) throw e;
  }
  if (remember) {
    if (auth.token) localStorage.setItem("paddock-token", auth.token); else localStorage.removeItem("paddock-token");
  }
  document.body.classList.toggle("viewer", !auth.canOperate);
  document.getElementById("signin").textContent = auth.canOperate ? "operator · sign out" : "viewer · sign in";
  connectLive(showLink);
}

function showLink(up) {
  const el = document.getElementById("link");
  el.textContent = up ? "live" : "offline";
  el.className = `pill ${up ? "ok" : "bad"}`;
}

function setupSignIn() {
  const dlg = document.getElementById("dlg-signin");
  document.getElementById("signin").addEventListener("click", async () => {
    if (auth.canOperate) { await signIn(""); route(); return; }
    document.getElementById("signin-error").textContent = "";
    dlg.showModal();
  });
  dlg.addEventListener("close", async () => {
    const token = dlg.returnValue === "token" ? document.getElementById("token").value.trim() : "";
    try { await signIn(token); route(); }
    catch (e) { document.getElementById("signin-error").textContent = e.message; dlg.showModal(); }
  });
}

function setupEStop() {
  const button = document.getElementById("estop");
  const banner = document.getElementById("estop-banner");
  let active = false;
  onLive((s) => {
    active = !!s.estop?.active;
    button.classList.toggle("active", active);
    button.textContent = active ? "RELEASE E-STOP" : "E-STOP";
    banner.hidden = !active;
    banner.textContent = active ? `FLEET E-STOP ACTIVE${s.estop.reason ? ` — ${s.estop.reason}` : ""}` : "";
  });
  button.addEventListener("click", async () => {
    const set = !active;
    const ok = await confirmAction(
      set ? "Stop every car?" : "Release the e-stop?",
      set ? "Every car stops within one tick and stays stopped until released." : "Cars return to their modes; manual cars stay at throttle 0 until driven.",
      set ? "STOP ALL CARS" : "release",
    );
    if (ok) await act(() => api("/fleet/estop", { method: "POST", body: { active: set, reason: set ? "operator (web app)" : "" } }), set ? "e-stop set" : "e-stop released");
  });
}

setupSignIn();
setupEStop();
window.addEventListener("hashchange", route);
// at boot the stored token is only read: a wrong one leaves this page a viewer, not the storage empty
signIn(auth.token, false).catch(() => signIn("", false)).finally(route);

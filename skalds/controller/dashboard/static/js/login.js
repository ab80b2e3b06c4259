// The login page: the token goes to POST /api/auth/login, which sets an HttpOnly cookie; the
// page never stores it. Comes back to the dashboard page the browser was sent from (#hash kept).

const form = document.getElementById("login-form");
const input = document.getElementById("token");
const error = document.getElementById("login-error");
const submit = document.getElementById("login-submit");

function toDashboard() {
  window.location.replace(`/dashboard${window.location.hash || ""}`);
}

function showError(message) {
  error.textContent = message;
  error.hidden = false;
  input.setAttribute("aria-invalid", "true");
  input.focus();
}

async function call(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  input.removeAttribute("aria-invalid");
  const token = input.value.trim();
  if (!token) {
    showError("Enter the API token.");
    return;
  }
  submit.disabled = true;
  try {
    const result = await call("/api/auth/login", { token });
    if (result.ok) {
      input.value = "";
      toDashboard();
      return;
    }
    showError(result.status === 401 ? "That token is not the controller's API token." : (result.data && result.data.error && result.data.error.message) || `Login failed (HTTP ${result.status}).`);
  } catch (err) {
    showError(`Cannot reach the controller: ${err.message}`);
  } finally {
    submit.disabled = false;
  }
});

call("/api/auth/session")
  .then((result) => {
    if (result.ok && result.data && result.data.authenticated) toDashboard();
    else input.focus();
  })
  .catch(() => input.focus());

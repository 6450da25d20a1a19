// The API client: every request carries the token from the login page (sessionStorage,
// X-Auth-Token); an error answer becomes an ApiError whose message is the API's own
// (Neutron's NeutronError.message and detail, or Octavia's faultstring), shown as it is.

const TOKEN = "kumoflow.token";
const ROLE = "kumoflow.role";

export const stats = {calls: 0};

export class ApiError extends Error {
  constructor(status, type, message, detail = "") {
    super(message);
    this.status = status;
    this.type = type;
    this.detail = detail;
  }

  get shown() {
    return this.detail && this.detail !== this.message ? `${this.message} (${this.detail})` : this.message;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  get admin() { return sessionStorage.getItem(ROLE) === "admin"; },
  get role() { return sessionStorage.getItem(ROLE); },
  set(token, role) { sessionStorage.setItem(TOKEN, token); sessionStorage.setItem(ROLE, role); },
  clear() { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(ROLE); },
};

let onUnauthorized = () => {};
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export async function request(method, path, body, token = session.token) {
  const headers = {Accept: "application/json"};
  if (token) headers["X-Auth-Token"] = token;
  const init = {method, headers, cache: "no-store"};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  stats.calls += 1;
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "Unreachable", `The controller cannot be reached (${err.message}).`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const err = errorOf(response, data, text);
    if (response.status === 401 && token === session.token && session.token) onUnauthorized(err);
    throw err;
  }
  return data;
}

function errorOf(response, data, text) {
  if (data && data.NeutronError) {
    const e = data.NeutronError;
    return new ApiError(response.status, e.type, e.message, e.detail);
  }
  if (data && data.faultstring) return new ApiError(response.status, data.faultcode || "Fault", data.faultstring);
  return new ApiError(response.status, `HTTP${response.status}`, text || response.statusText);
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const put = (path, body) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);

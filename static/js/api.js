// Fetch helpers for the portal's calls to the REST API (docs/api.md), with the session.
//
//   getJSON(url)            GET, parsed JSON; throws ApiError on a non-2xx answer
//   postJSON(url, body)     POST with the CSRF token (from the csrftoken cookie)
//   sendJSON(method, url, body)  any unsafe method (PATCH, DELETE) likewise
//   fetchAllPages(url)      follows a paginated list's "next" links; returns every result
//   csrfToken()             the token Django expects in X-CSRFToken
//
// An ApiError carries the answer's status and its JSON body: {"field": [...]} for a 400,
// {"detail": ...} for 403 and 404 (hpo_platform.api_errors).

export class ApiError extends Error {
  constructor(status, body) {
    super(ApiError.describe(status, body));
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  static describe(status, body) {
    if (body && typeof body === "object") {
      if (typeof body.detail === "string") return body.detail;
      const parts = Object.entries(body).map(([field, errors]) =>
        `${field}: ${Array.isArray(errors) ? errors.join(" ") : String(errors)}`);
      if (parts.length) return parts.join("; ");
    }
    return `The server answered ${status}.`;
  }
}

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  // CSRF_COOKIE_HTTPONLY deployments: the token of a form on the page.
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch { body = { detail: text.slice(0, 500) }; }
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function getJSON(url, { signal } = {}) {
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    signal,
  });
  return parse(response);
}

export async function sendJSON(method, url, body, { signal } = {}) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  return parse(response);
}

export function postJSON(url, body = {}, options = {}) {
  return sendJSON("POST", url, body, options);
}

export async function fetchAllPages(url, { signal, limit = 100 } = {}) {
  const results = [];
  let next = url;
  for (let pages = 0; next && pages < limit; pages += 1) {
    const page = await getJSON(next, { signal });
    results.push(...(page.results || []));
    // The link is absolute as the server saw the request; behind a proxy the host may
    // differ from the page's, so only its path and query are followed.
    next = page.next ? sameOrigin(page.next) : null;
  }
  return results;
}

function sameOrigin(link) {
  const parsed = new URL(link, window.location.href);
  return parsed.pathname + parsed.search;
}
